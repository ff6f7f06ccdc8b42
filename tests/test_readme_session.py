"""The README's shell example of the jobstore command runs as shown, so the two cannot drift apart.

The example is every block fenced as ```console in the README's "## The jobstore command"
section (up to the next "## " heading), read in order as one transcript: a line starting "$ "
is a command, one starting "> " continues it, every other line is what the command before printed.
A command ending in ``; echo "exit $?"`` must exit with the status shown on its last line; every
other command must exit 0. The lines shown must appear in what the command printed, in order,
with ids, times and ages free to differ (an id printed once stands for the same job afterwards);
lines the README leaves out (such as ``wait``'s progress bar) may be printed, but not an error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## The jobstore command"
COMMANDS = Path(sys.executable).parent  # where the venv's ``jobstore`` script is
ECHOED_STATUS = '; echo "exit $?"'

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
# Hyphens are excluded around an age so that a piece of a uuid ("-123d-") is never taken for one.
AGE = re.compile(r"(?<![\w-])\d+[smhdw](?![\w-])")


@dataclass
class Step:
    """One command of the transcript and what the README shows it printing."""

    command: str
    shown: list[str] = field(default_factory=list)
    status: int = 0


def transcript(text: str) -> list[Step]:
    """The commands of the console blocks in the jobstore command's section, in order.

    :param text: the README
    """
    section = text[text.index(SECTION + "\n") :]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    blocks = re.findall(r"^```console\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    steps: list[Step] = []
    for block in blocks:
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            elif line.startswith("> ") and steps:
                steps[-1].command += "\n" + line[2:]
            elif steps:
                steps[-1].shown.append(line)
            else:
                raise AssertionError(f"a console block starts with output, not a command: {line!r}")
    for step in steps:
        if step.command.endswith(ECHOED_STATUS):
            assert step.shown and re.fullmatch(r"exit \d+", step.shown[-1]), step
            step.command = step.command[: -len(ECHOED_STATUS)]
            step.status = int(step.shown.pop().split()[1])
    return steps


def normalized(line: str) -> str:
    """A line with its times and ages replaced and its runs of spaces made one, as lines are compared."""
    return " ".join(AGE.sub("<age>", TIME.sub("<time>", line)).split())


def pattern(shown: str, ids: dict[str, str]) -> re.Pattern[str]:
    """A README line as a pattern of the printed line: an id seen before must be the job's own, a new one any id.

    :param shown: the line as the README shows it
    :param ids: each README id seen so far, and the id printed in its place
    """
    parts, new = [], {}
    for piece in re.split(f"({UUID.pattern})", normalized(shown)):
        if not UUID.fullmatch(piece):
            parts.append(re.escape(piece))
        elif piece in ids:
            parts.append(re.escape(ids[piece]))
        elif piece in new:
            parts.append(f"(?P={new[piece]})")
        else:
            new[piece] = f"id{len(new)}"
            parts.append(f"(?P<{new[piece]}>{UUID.pattern})")
    return re.compile("".join(parts))


def check_output(step: Step, printed: list[str], ids: dict[str, str]) -> None:
    """Every line the README shows is printed, in order, and every error printed is shown; new ids are learnt.

    :param step: the command and what the README shows
    :param printed: the lines it printed (stdout and stderr as a terminal interleaves them)
    :param ids: each README id seen so far, and the id printed in its place; added to
    """
    position = 0
    matched = set()
    for shown in step.shown:
        wanted = pattern(shown, ids)
        for index in range(position, len(printed)):
            match = wanted.fullmatch(normalized(printed[index]))
            if match:
                for readme_id, printed_id in zip(UUID.findall(normalized(shown)), UUID.findall(normalized(printed[index]))):
                    ids.setdefault(readme_id, printed_id)
                matched.add(index)
                position = index + 1
                break
        else:
            raise AssertionError(f"$ {step.command}\nthe README shows {shown!r}, but it printed:\n" + "\n".join(printed))
    unshown = [line for index, line in enumerate(printed) if index not in matched and line.startswith(("jobstore: ", "Traceback"))]
    assert not unshown, f"$ {step.command}\nprinted an error the README does not show: {unshown}"


def substituted(command: str, ids: dict[str, str]) -> str:
    """The command with each README id replaced by the id printed in its place.

    :param command: the command as the README shows it
    :param ids: each README id seen so far, and the id printed in its place
    """
    for readme_id in UUID.findall(command):
        assert readme_id in ids, f"$ {command}\nuses the id {readme_id}, which no command before printed"
    return UUID.sub(lambda match: ids[match[0]], command)


def test_the_transcript_is_read_from_the_readme():
    steps = transcript(README.read_text(encoding="utf-8"))
    commands = [step.command.split()[:2] for step in steps]
    for name in ("create", "claim", "progress", "message", "list", "show", "stats", "wait", "cancel", "finish", "validate"):
        assert ["jobstore", name] in commands, name
    assert any(step.command.startswith("while ") and "jobstore claim" in step.command for step in steps)
    assert sorted({step.status for step in steps}) == [0, 1, 3, 4]


def test_a_transcript_with_a_status_not_shown_is_refused():
    with pytest.raises(AssertionError, match="exit"):
        transcript(f'{SECTION}\n\n```console\n$ jobstore show 42{ECHOED_STATUS}\njobstore: no job with id \'42\'\n```\n')


def test_output_is_matched_with_ids_times_and_ages_free():
    ids: dict[str, str] = {}
    readme_id, printed_id = "b50603b0-63b0-42a1-af30-40846bd0816e", "02cbf5ad-6730-4225-123d-aa8a168c68f6"
    step = Step("jobstore list", [f"{readme_id}  resize  running  2s", "createdAt  2026-11-22T22:40:40.957685Z (2s ago)"])
    check_output(step, [f"{printed_id}  resize  running     0s", "a progress bar", "createdAt  2027-01-01T00:00:00.000001Z (1m ago)"], ids)
    assert ids == {readme_id: printed_id}
    with pytest.raises(AssertionError, match="the README shows"):
        check_output(Step("jobstore show", [f"id  {readme_id}"]), [f"id  {UUID.sub('0' * 8 + '-0000-0000-0000-' + '0' * 12, printed_id)}"], ids)
    with pytest.raises(AssertionError, match="printed an error the README does not show"):
        check_output(Step("jobstore progress x 1"), ["jobstore: no job with id 'x'"], ids)
    with pytest.raises(AssertionError, match="which no command before printed"):
        substituted("jobstore show 61c64358-33be-4d00-a18c-2eeec08a3475", ids)


def test_the_readme_transcript_runs_as_shown(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "JOBSTORE_PATH"}
    environment.update(PATH=f"{COMMANDS}{os.pathsep}{environment.get('PATH', '')}", COLUMNS="200")
    assert (COMMANDS / "jobstore").exists(), "the jobstore console script is missing: pip install -e '.[test]'"
    ids: dict[str, str] = {}
    for step in transcript(README.read_text(encoding="utf-8")):
        command = substituted(step.command, ids)
        done = subprocess.run(
            ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, cwd=tmp_path, env=environment
        )
        assert done.returncode == step.status, f"$ {command}\nexit {done.returncode}, the README shows {step.status}:\n{done.stdout}"
        check_output(step, done.stdout.splitlines(), ids)
