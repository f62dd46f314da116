"""The examples of README.md and docs/*.md: their code blocks, which of them run, and how
an example's shown output is compared with what a command printed.

How to write an example that `tests/e2e/test_docs_examples.py` runs:

- **Shell** (a `sh` block). A line starting with `$ ` is a command (continued over lines
  ending in `\\` or inside an open quote); the lines after it, up to the next `$ `, are
  what it prints. A block without any `$ ` is a script: every line is a command, `#`
  lines are comments. Commands run in bash, in order, against a live stack in dev mode,
  in a directory that holds `photo.jpg` (a small JPEG) and `workflow.json` (a small
  batch body).
- **What is checked.** `curl` must answer 2xx, and send a JSON body (`-d`) with
  `-H 'content-type: application/json'`; any other command must exit 0 (or what a
  `# → exit N` comment says). Shown output: a line starting with `{` or `[` is JSON, and
  every field shown must be in the answer with that value; other lines must appear in
  the output in that order, spaces matching any run of spaces. In both, a number matches
  any number, a timestamp any timestamp, and `…` anything. A command whose output does
  not match yet and that changes nothing (a `curl` GET, `jobsvc status`, `list`,
  `events`…) is tried again for a few seconds: jobs take a moment to run.
- **Placeholders.** `localhost:8000` is the stack's API; `$KEY` is empty (dev mode needs
  no key, so a reader of `make run` has none). A job or upload id is written as four hex
  digits and `…` (`8c3e…`): shown output binds it to the value printed there, and where
  it first appears in a command it is the last job submitted before it in the same file
  (`$ID` too). `# → id R` after a submit names its
  job `R`, and `"R"` in later commands and output of the file is that id.
  `# → status "failed"` after a submit (on its last line, or the line after it) waits
  until the job has that status.
- **Python** (`python`). A block runs as it is, `http://127.0.0.1:8000` being the stack,
  with the names its prose defines: `KEY` (None: dev mode) and `upload_ids` (ids of
  uploaded images). Task module code (it imports `service.task_api` or declares `@task`)
  is not run: a worker loads such code.
- **JSON** (`json`): a batch body (`{"jobs": …}`) is sent to `POST /jobs/batch` and must
  answer 2xx; any other is an answer the doc shows, and must be JSON (`…` and `[...]`
  allowed).
- **Not run**, by the rules of `SKIP_LANGUAGES` and `SKIP_COMMANDS` below: diagrams,
  configuration files, manifests and queries for other programs, settings lines, and
  commands that build, install or start the project (make, pip, docker, `jobsvc run`,
  `jobsvc worker`…) rather than talk to a running stack. A block or command that no rule
  covers fails the test: write an example that runs, or a rule that says why not.
"""

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Fenced blocks in these languages are not commands for a stack.
SKIP_LANGUAGES = {
    "mermaid": "a diagram",
    "promql": "Prometheus queries (need a Prometheus scraping a fleet)",
    "ini": "a configuration file of another program (PgBouncer)",
    "yaml": "a manifest of another program (KEDA)",
    "text": "an illustration: a trace's shape, a formula",
}

# Shell commands, by their first words, that build, install or start the project or
# set its environment rather than talk to a running stack.
SKIP_COMMANDS = {
    "make": "builds, tests or starts the project (a make target)",
    "pip": "installs the package",
    "uv": "installs the package",
    "git": "gets or changes the source",
    "cd": "moves around the source",
    "$EDITOR": "opens an editor",
    "vi": "opens an editor",
    "nano": "opens an editor",
    "docker": "runs the stack in containers",
    "jobsvc run": "starts a whole stack",
    "jobsvc api": "starts a process of a stack",
    "jobsvc worker": "starts a process of a stack",
    "jobsvc reconcile": "starts a process of a stack",
    "jobsvc dashboard": "starts a process of a stack",
    "rq worker": "starts a process of a stack (RQ's own command)",
    "jobsvc keys": "manages keys in the database directly",
    "jobsvc db": "manages the database directly",
    "NAME=value": "a setting, for a process's environment",
}

# The shell commands that talk to a running stack.
_CLIENT_COMMANDS = "submit batch status list events cancel retry tasks bulk schedules queues"
RUN_COMMANDS = ("curl", "jobsvc rate-limits", *(f"jobsvc {c}" for c in _CLIENT_COMMANDS.split()))

# Commands that change nothing: tried again while their output does not match yet.
READ_ONLY = re.compile(
    r"^(curl(?!.*(-X|-d |--data|/stream))|jobsvc (status|list|events|tasks)\b"
    r"|jobsvc (schedules|queues|rate-limits) (list|show)\b)"
)

PLACEHOLDER = re.compile(r"\b[0-9a-f]{4}…")
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"
NUMBER = r"-?\d+(?:\.\d+)?"
SUBMIT = re.compile(r"^(curl .*-X POST \S*/jobs(/batch)?[\s'\"]|jobsvc (submit|batch) )", re.S)
EXPECT_EXIT = re.compile(r"#\s*→\s*exit (\d+)")
EXPECT_STATUS = re.compile(r'#\s*→\s*status "(\w+)"')
NAMES_ID = re.compile(r"#\s*→\s*id (\w+)")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass
class Command:
    text: str  # as written, continuation lines included
    shown: list[str] = field(default_factory=list)  # the output the doc shows

    @property
    def words(self) -> str:
        return " ".join(self.text.split())


def documents() -> list[Path]:
    """README.md and docs/*.md, in the order they are read."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file."""
    found: list[Block] = []
    opened: tuple[int, str] | None = None
    lines: list[str] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if opened is None:
                opened, lines = (n, line[3:].strip()), []
            else:
                found.append(Block(path, opened[0], opened[1], "\n".join(lines)))
                opened = None
        elif opened is not None:
            lines.append(line)
    return found


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def commands(block: Block) -> list[Command]:
    """A shell block's commands, each with the output shown after it."""
    lines = block.text.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    found: list[Command] = []
    pending: list[str] = []
    for line in lines:
        if pending:
            pending.append(line)
        elif found and line.lstrip().startswith("# →"):  # what the command before does
            found[-1].text += "\n" + line.strip()
            continue
        elif prompted and line.startswith("$ "):
            pending = [line[2:]]
        elif not prompted and line.strip() and not line.lstrip().startswith("#"):
            pending = [line]
        elif prompted and line.strip() and found:
            found[-1].shown.append(line)
            continue
        else:
            continue
        if _complete("\n".join(pending)):
            found.append(Command("\n".join(pending)))
            pending = []
    assert not pending, f"{block.where}: a command is not finished: {pending}"
    return found


def skip_rule(command: Command) -> str | None:
    """Why a shell command is not run (None: it runs); an error if no rule covers it."""
    words = re.sub(r"^([A-Z][A-Z0-9_]*=\S*\s*)+", "", command.words)  # NAME=value before
    if not words or words.startswith("#"):
        return SKIP_COMMANDS["NAME=value"]
    for prefix, why in SKIP_COMMANDS.items():
        if words == prefix or words.startswith(prefix + " "):
            return why
    if words.startswith(RUN_COMMANDS):
        return None
    raise AssertionError(
        f"no rule runs or skips the command {words!r}: make it an example that runs "
        f"against a stack, or add a rule to tests/e2e/doc_examples.py"
    )


def is_batch(block: Block) -> bool:
    return block.text.lstrip().startswith('{"jobs"')


def python_rule(block: Block) -> str | None:
    """Why a Python block is not run (None: it runs)."""
    if "service.task_api" in block.text or "@task(" in block.text:
        return "task module code: a worker loads it"
    return None


# --- Comparing shown output with what was printed ---------------------------------------


class Bindings:
    """Placeholders of one file, bound to the values they stand for."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.last_job: str | None = None

    def fill(self, text: str) -> str:
        """`text` with its placeholders bound: new ones to the last job submitted."""

        def one(match: re.Match[str]) -> str:
            name = match.group(0)
            if name not in self.values:
                assert self.last_job, f"{name} names a job, but none was submitted before"
                self.values[name] = self.last_job
            return self.values[name]

        text = PLACEHOLDER.sub(one, text)
        for name, value in self.values.items():
            if not PLACEHOLDER.fullmatch(name):
                text = text.replace(f'"{name}"', f'"{value}"')
        return text


def matches(shown: list[str], printed: str, bindings: Bindings) -> str | None:
    """None if `printed` shows what `shown` does; else what differs. Binds placeholders
    only when everything matches."""
    if not shown:
        return None
    trial = dict(bindings.values)
    if shown[0].lstrip().startswith(("{", "[")):
        problem = _json_matches(" ".join(shown), printed, trial)
    else:
        problem = _lines_match(shown, printed, trial)
    if problem is None:
        bindings.values = trial
    return problem


def shown_json(text: str, values: dict[str, str]) -> Any:
    """The JSON a doc shows, `…` kept as a wildcard string."""
    for name, value in values.items():
        if not PLACEHOLDER.fullmatch(name):
            text = text.replace(f'"{name}"', f'"{value}"')
    text = re.sub(r",\s*…\s*(?=[}\]])", "", text)  # ",…}": more fields
    text = re.sub(r"\[\s*\.\.\.\s*\]", '"…"', text)  # "[...]": any list
    text = re.sub(r"(?<=[:\[,])\s*…\s*(?=[,}\]])", '"…"', text)  # a bare value
    return json.loads(text)


def _json_matches(text: str, printed: str, values: dict[str, str]) -> str | None:
    expected = shown_json(text, values)
    try:
        actual = json.loads(printed)
    except ValueError:
        return f"not JSON: {printed[:300]!r}"
    return _same(expected, actual, values, "")


def _same(expected: Any, actual: Any, values: dict[str, str], at: str) -> str | None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{at or 'the answer'}: {actual!r} is not an object"
        for key, value in expected.items():
            if key not in actual:
                return f"{at}.{key} missing from {sorted(actual)}"
            if problem := _same(value, actual[key], values, f"{at}.{key}"):
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{at}: {actual!r} is not like {expected!r}"
        for n, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if problem := _same(e, a, values, f"{at}[{n}]"):
                return problem
        return None
    if isinstance(expected, str) and PLACEHOLDER.fullmatch(expected):
        if expected not in values:
            values[expected] = str(actual)
        return None if values[expected] == actual else f"{at}: {actual!r} ≠ {expected}"
    if isinstance(expected, str) and expected != actual:
        # as a shown line: `…` anything, a number any number, a timestamp any timestamp
        printed = actual if isinstance(actual, str) else json.dumps(actual)
        if expected == "…" or _line_pattern(expected, dict(values))[0].fullmatch(printed):
            return None
        return f"{at}: {actual!r} is not like {expected!r}"
    if _number(expected) and _number(actual):  # numbers are illustrations: any number
        return None
    return None if expected == actual else f"{at}: {actual!r} ≠ {expected!r}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _line_pattern(line: str, values: dict[str, str]) -> tuple[re.Pattern[str], list[str]]:
    """A shown line as a regex, and the placeholders its groups capture, in order."""
    parts: list[str] = []
    captured: list[str] = []
    for token in re.split(rf"({PLACEHOLDER.pattern}|…|\s+|{TIMESTAMP}|{NUMBER})", line):
        if not token:
            continue
        if PLACEHOLDER.fullmatch(token):
            if token in values:
                parts.append(re.escape(values[token]))
            else:
                parts.append(r"(\S+)")
                captured.append(token)
        elif token == "…":
            parts.append(".*")
        elif token.isspace():
            parts.append(r"\s*")
        elif re.fullmatch(TIMESTAMP, token):
            parts.append(TIMESTAMP)
        elif re.fullmatch(NUMBER, token):
            parts.append(NUMBER)
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts)), captured


def _lines_match(shown: list[str], printed: str, values: dict[str, str]) -> str | None:
    actual = [line.strip() for line in re.split(r"[\r\n]+", printed) if line.strip()]
    at = 0
    for line in shown:
        if line.strip() == "…":
            continue
        while at < len(actual) and not _line_matches(line.strip(), actual[at], values):
            at += 1
        if at == len(actual):
            return f"no line like {line.strip()!r} (in order) in:\n{printed}"
        at += 1
    return None


def _line_matches(shown: str, actual: str, values: dict[str, str]) -> bool:
    """A line that ends in a JSON object (`data: {…}`) is compared field by field."""
    trial = dict(values)
    prefix, brace, rest = shown.partition("{")
    if brace and rest.endswith("}"):
        pattern, captured = _line_pattern(prefix.strip(), trial)
        head, brace_actual, tail = actual.partition("{")
        if not (brace_actual and pattern.fullmatch(head.strip())):
            return False
        if _json_matches(brace + rest, brace_actual + tail, trial) is not None:
            return False
        found = pattern.fullmatch(head.strip())
    else:
        pattern, captured = _line_pattern(shown, trial)
        found = pattern.fullmatch(actual)
    if not found:
        return False
    values.update(trial)
    values.update(zip(captured, found.groups()[: len(captured)], strict=False))
    return True
