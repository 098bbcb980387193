import argparse
import re

from PIL import Image

from diffusion_canon import demo
from diffusion_canon.commands import demo as demo_command
from diffusion_canon.demo import DemoSection, run_demo


def tiny_section(output, pipelines):
    Image.new("RGB", (4, 4), (255, 0, 0)).save(output / "tiny.png")
    return DemoSection("Tiny <pipeline>", "added by appending one provider", [("tiny.png", "red")], [["a"], ["1"]])


def broken_section(output, pipelines):
    raise RuntimeError("this provider is broken")


def test_default_gallery_is_complete(tmp_path, capsys):
    # what `make demo` builds: every section that does not train (fine-tuning has its own slow test)
    assert "diffusion_canon.demo.fine_tuning:fine_tuning_section" in demo.TRAINING_SECTIONS
    assert not set(demo.TRAINING_SECTIONS) & set(demo.SECTIONS)
    index, failed = run_demo(tmp_path)
    assert failed == []
    printed = capsys.readouterr().out
    assert all(f"[{n}/{len(demo.SECTIONS)}]" in printed for n in range(1, len(demo.SECTIONS) + 1))
    page = index.read_text()
    assert "make demo-train" in page and 'class="note"' in page  # what was left out, and how to build it
    assert "The glyph world" in page and "glyph classifier" in page and "cFID" in page and "tiny SD base" in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 4
    for source in sources:
        assert not source.startswith("/") and (tmp_path / source).is_file()
    # the classifier table shows accuracies as percentages measured now
    accuracies = [float(x) for x in re.findall(r"<td>(\d+\.\d)%</td>", page)]
    assert len(accuracies) == 4 and min(accuracies[0::2]) >= 95


def test_sections_extend_and_failures_are_visible(tmp_path):
    sections = ["test_demo:tiny_section", "test_demo:broken_section"]
    index, failed = run_demo(tmp_path, sections)
    page = index.read_text()
    assert failed == ["test_demo:broken_section"]
    assert "Tiny &lt;pipeline&gt;" in page and '<img src="tiny.png"' in page
    assert "this provider is broken" in page and 'class="error"' in page


def test_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    demo_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo", "--output", str(tmp_path / "out"), "--sections", "test_demo:tiny_section"])
    assert args.func(args) == 0
    assert str((tmp_path / "out" / "index.html").resolve()) in capsys.readouterr().out
    args = parser.parse_args(["demo", "--output", str(tmp_path / "bad"), "--sections", "test_demo:broken_section"])
    assert args.func(args) == 1
    assert parser.parse_args(["demo"]).output == "outputs/demo"
    assert not parser.parse_args(["demo"]).train and parser.parse_args(["demo", "--train"]).train

