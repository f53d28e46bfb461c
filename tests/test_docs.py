"""Keep the docs honest: every model key, finding code, type, command and option is documented.

Like datasette's ``test_docs.py``: the code is the source of truth, and a test fails (listing
what is missing) when docs/model.md or docs/cli.md falls behind it.

docs/model.md marks each key table with an HTML comment naming the spec classes it
documents, e.g. ``<!-- spec: PostgresSource MysqlSource -->``; the table's first column
lists the keys as ``name``. The type table is marked ``<!-- types -->`` and the finding
codes table ``<!-- finding-codes -->``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import shutil
import typing
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel

from dataferry.cli.main import every_command
from dataferry.model import spec
from dataferry.model.findings import CODES
from dataferry.model.jsonschema import model_json_schema
from dataferry.model.types import PRIMITIVE_NAMES, Primitive, to_store_arrow
from dataferry.model.yamlfile import YamlProblem, parse_yaml
from tests.conftest import git

DOCS = Path(__file__).resolve().parents[1] / "docs"
MARKER = re.compile(r"^<!--\s*(?P<name>[\w-]+)(?::\s*(?P<args>[^>]*?))?\s*-->\s*$")
HEADING = re.compile(r"^(?P<level>#{1,6})\s+(?P<title>.+?)\s*$")


def _read(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def model_md() -> str:
    return _read("model.md")


@pytest.fixture(scope="module")
def cli_md() -> str:
    return _read("cli.md")


def _fail_if(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{what}:\n  " + "\n  ".join(problems), pytrace=False)


# --- parsing the Markdown ----------------------------------------------------------------


def backticked(text: str) -> set[str]:
    """Every `code span` in ``text``."""
    return set(re.findall(r"`([^`\n]+)`", text))


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def marked_tables(text: str) -> Iterator[tuple[str, list[str], list[list[str]]]]:
    """(marker name, marker arguments, rows of the table after it) for each marker."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if match is None:
            continue
        rows: list[list[str]] = []
        for row in lines[index + 1 :]:
            if not row.startswith("|"):
                if rows or row.strip():
                    break
                continue
            rows.append(_cells(row))
        # rows[:2] are the header and the |---| line
        yield match["name"], (match["args"] or "").split(), rows[2:]


def first_column_keys(rows: list[list[str]]) -> list[str]:
    """The `name`s in the first column of table rows."""
    keys = []
    for row in rows:
        keys.extend(re.findall(r"`([^`]+)`", row[0]))
    return keys


def sections(text: str) -> dict[str, str]:
    """Heading title -> its text, up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    headings = []
    in_code = False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else HEADING.match(line)
        if match:
            headings.append((index, len(match["level"]), match["title"].strip("` ")))
    out = {}
    for position, (index, level, title) in enumerate(headings):
        end = next((i for i, lvl, _ in headings[position + 1 :] if lvl <= level), len(lines))
        out[title] = "\n".join(lines[index:end])
    return out


# --- docs/model.md -----------------------------------------------------------------------


def spec_models() -> list[type[BaseModel]]:
    """Every pydantic model of the typed model (spec.py), base classes included."""
    return [
        cls
        for _, cls in inspect.getmembers(spec, inspect.isclass)
        if issubclass(cls, BaseModel) and cls.__module__ == spec.__name__ and cls.model_fields
    ]


def keys_of(cls: type[BaseModel]) -> list[str]:
    """The YAML keys of ``cls``: field aliases where they have one."""
    return [info.alias or name for name, info in cls.model_fields.items()]


def own_keys(cls: type[BaseModel]) -> list[str]:
    """The keys ``cls`` adds to its model base classes."""
    inherited = {
        key
        for base in cls.__mro__[1:]
        if isinstance(base, type) and issubclass(base, BaseModel) and base is not BaseModel
        for key in keys_of(base)
    }
    return [key for key in keys_of(cls) if key not in inherited]


def test_every_model_key_is_documented(model_md: str) -> None:
    documented = backticked(model_md)
    missing = [
        f"{cls.__name__}.{key}"
        for cls in spec_models()
        for key in keys_of(cls)
        if key not in documented
    ]
    _fail_if(missing, "docs/model.md does not mention these keys (write them as `key`)")


def test_every_model_has_a_complete_key_table(model_md: str) -> None:
    tables = [(args, rows) for name, args, rows in marked_tables(model_md) if name == "spec"]
    problems = []
    by_class = {cls.__name__: cls for cls in spec_models()}
    covered: set[str] = set()
    for args, rows in tables:
        unknown = [a for a in args if a not in by_class]
        problems += [f"<!-- spec: {' '.join(args)} -->: no spec class {a}" for a in unknown]
        classes = [by_class[a] for a in args if a in by_class]
        covered.update(args)
        listed = first_column_keys(rows)
        wanted = {key for cls in classes for key in own_keys(cls)}
        allowed = {key for cls in classes for key in keys_of(cls)}
        problems += [
            f"<!-- spec: {' '.join(args)} --> table lacks `{key}`"
            for key in sorted(wanted - set(listed))
        ]
        problems += [
            f"<!-- spec: {' '.join(args)} --> table documents `{key}`, which is not a key of "
            f"{', '.join(args)}"
            for key in listed
            if key not in allowed
        ]
    problems += [
        f"no key table for {name} (add <!-- spec: {name} --> before its table)"
        for name, cls in by_class.items()
        if name not in covered and own_keys(cls)
    ]
    _fail_if(problems, "docs/model.md key tables are out of date")


def literal_values(annotation: Any) -> Iterator[Any]:
    """Every value of every ``Literal`` inside ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        yield from typing.get_args(annotation)
        return
    if origin is typing.Annotated:
        yield from literal_values(typing.get_args(annotation)[0])
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return  # documented where that model is
    for arg in typing.get_args(annotation):
        yield from literal_values(arg)


def test_every_allowed_value_is_documented(model_md: str) -> None:
    documented = backticked(model_md)
    missing = sorted(
        {
            f"{cls.__name__}.{info.alias or name}: {value}"
            for cls in spec_models()
            for name, info in cls.model_fields.items()
            for value in literal_values(info.annotation)
            if str(value) not in documented
        }
    )
    _fail_if(missing, "docs/model.md does not mention these allowed values (as `value`)")


def test_every_finding_code_is_in_the_codes_table(model_md: str) -> None:
    tables = [rows for name, _, rows in marked_tables(model_md) if name == "finding-codes"]
    assert tables, "docs/model.md has no <!-- finding-codes --> table"
    listed = first_column_keys(tables[0])
    problems = [f"`{code}` is not in the table" for code in CODES if code not in listed]
    problems += [f"`{code}` is not a finding code" for code in listed if code not in CODES]
    problems += [f"`{code}` appears twice" for code in set(listed) if listed.count(code) > 1]
    _fail_if(problems, "docs/model.md finding codes table is out of date")


def test_every_type_is_documented_with_its_arrow_type(model_md: str) -> None:
    tables = [rows for name, _, rows in marked_tables(model_md) if name == "types"]
    assert tables, "docs/model.md has no <!-- types --> table"
    arrow_by_type = {}
    for row in tables[0]:
        names = re.findall(r"`([^`]+)`", row[0])
        arrows = re.findall(r"`([^`]+)`", row[1]) if len(row) > 1 else []
        for type_name in names:
            arrow_by_type[type_name] = arrows
    problems = [f"`{name}` has no row" for name in sorted(PRIMITIVE_NAMES - set(arrow_by_type))]
    for name in sorted(PRIMITIVE_NAMES & set(arrow_by_type)):
        expected = str(to_store_arrow(Primitive(name)))
        if arrow_by_type[name] != [expected]:
            problems.append(
                f"`{name}` is stored as `{expected}`, the table says {arrow_by_type[name]}"
            )
    for template in ("decimal(p,s)", "string(n)", "list<T>", "map<K,V>"):
        if template not in arrow_by_type:
            problems.append(f"`{template}` has no row")
    if not any(name.startswith("struct<") for name in arrow_by_type):
        problems.append("`struct<name:T, ...>` has no row")
    _fail_if(problems, "docs/model.md type table is out of date")


@pytest.mark.parametrize("name", ["model.md", "cli.md", "editors.md"])
def test_yaml_and_json_examples_parse(name: str) -> None:
    text = _read(name)
    problems = []
    for language, block in re.findall(r"```(yaml|json)\n(.*?)```", text, re.S):
        try:
            if language == "yaml":
                parse_yaml(block)
            else:
                json.loads(block)
        except (YamlProblem, json.JSONDecodeError) as exc:
            problems.append(f"{language} block starting {block.splitlines()[0]!r}: {exc}")
    _fail_if(problems, f"docs/{name} has examples that do not parse")


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("name", ["model.md", "cli.md", "editors.md"])
def test_links_between_docs_resolve(name: str) -> None:
    problems = []
    for target, anchor in re.findall(r"\]\(([\w./-]*?)(?:#([\w-]+))?\)", _read(name)):
        if target.startswith("http") or (not target and not anchor):
            continue
        page = target or name
        if not (DOCS / page).is_file():
            problems.append(f"({target}#{anchor}): docs/{page} does not exist")
            continue
        if anchor and anchor not in {slug(title) for title in sections(_read(page))}:
            problems.append(f"({target}#{anchor}): no such heading in docs/{page}")
    _fail_if(problems, f"docs/{name} has broken links")


# --- docs/cli.md -------------------------------------------------------------------------


def cli_commands() -> dict[str, Any]:
    """``ferry`` command name -> click command, from the typer app's registrations.

    (Typer vendors click, so the commands are duck-typed rather than ``click.Command``.)
    """
    app = every_command()
    group: Any = typer.main.get_command(app)
    names = [
        info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        for info in app.registered_commands
    ]
    names += [info.name or info.typer_instance.info.name or "" for info in app.registered_groups]
    assert names, "the typer app registers no commands"
    commands = {}
    for name in names:
        command = group.commands[name]
        commands[name] = command
        if hasattr(command, "commands"):  # a group: document `ferry group sub` too
            for sub_name, sub in command.commands.items():
                commands[f"{name} {sub_name}"] = sub
    return commands


def long_options(command: Any) -> list[str]:
    """``--name`` (and ``--no-name``) of every option except ``--help``."""
    return [
        opt
        for param in command.params
        if param.param_type_name == "option"
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--") and opt != "--help"
    ]


def command_section(cli_md: str, name: str) -> str | None:
    for title, body in sections(cli_md).items():
        if title == f"ferry {name}":
            return body
    return None


def test_every_command_is_documented(cli_md: str) -> None:
    missing = [
        name
        for name in cli_commands()
        if command_section(cli_md, name) is None and f"`ferry {name}`" not in cli_md
    ]
    _fail_if(
        missing,
        "docs/cli.md does not document these commands (a '## ferry NAME' heading or `ferry NAME`)",
    )


def test_every_option_is_documented(cli_md: str) -> None:
    problems = []
    for name, command in cli_commands().items():
        text = command_section(cli_md, name) or cli_md
        where = f"under '## ferry {name}'" if command_section(cli_md, name) else "anywhere"
        documented = backticked(text)
        for option in long_options(command):
            if not any(span == option or span.startswith(f"{option} ") for span in documented):
                problems.append(f"ferry {name} {option} (not found {where})")
    group = typer.main.get_command(every_command())
    for option in long_options(group):
        if f"`{option}`" not in cli_md:
            problems.append(f"ferry {option} (global option)")
    _fail_if(problems, "docs/cli.md does not document these options (as `--option`)")


def test_check_json_keys_are_documented(
    cli_md: str, tmp_path: Path, ferry: Callable[..., Any]
) -> None:
    """Run ``ferry check --json --base`` on the example and look up every key it prints."""
    root = tmp_path / "acme"
    with resources.as_file(resources.files("dataferry") / "examples" / "acme") as example:
        shutil.copytree(example, root, ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    research = root / "teams" / "research" / "research.yaml"
    research.write_text(research.read_text() + "# a change\n", encoding="utf-8")
    (research.parent / "notes.yaml").write_text("", encoding="utf-8")  # a warning: empty file
    result = ferry(
        "check", "--json", "--model", root, "--base", "main", "--author", "dana@acme.example"
    )
    assert result.code == 0, result
    payload = json.loads(result.out)
    assert payload["findings"], result
    keys = set(payload) | {key for finding in payload["findings"] for key in finding}
    section = command_section(cli_md, "check") or ""
    missing = sorted(key for key in keys if f"`{key}`" not in section)
    _fail_if(missing, "docs/cli.md (## ferry check) does not document these --json keys")


# --- ferry schema ------------------------------------------------------------------------

JSON_SCHEMA_KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$comment", "title", "description", "default",
    "examples", "type", "enum", "const", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "required", "minProperties", "maxProperties",
    "items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minLength",
    "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "anyOf", "oneOf", "allOf", "not", "if", "then", "else",
    "deprecated", "readOnly", "writeOnly", "discriminator",
}  # fmt: skip
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def _schema_problems(schema: dict[str, Any]) -> list[str]:
    """Structural checks that need no JSON Schema library."""
    problems: list[str] = []
    if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        problems.append(f"$schema is {schema.get('$schema')!r}")
    defs = schema.get("$defs", {})

    def walk(node: Any, path: str) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, dict):
            problems.append(f"{path}: a schema must be an object or a boolean")
            return
        for key, value in node.items():
            here = f"{path}/{key}"
            if key not in JSON_SCHEMA_KEYWORDS:
                problems.append(f"{here}: unknown keyword")
            elif key == "$ref":
                target = value.removeprefix("#/$defs/")
                if not value.startswith("#/$defs/") or target not in defs:
                    problems.append(f"{here}: {value!r} does not resolve")
            elif key == "type":
                kinds = value if isinstance(value, list) else [value]
                problems.extend(f"{here}: bad type {k!r}" for k in kinds if k not in JSON_TYPES)
            elif key in ("properties", "patternProperties", "$defs"):
                for name, sub in value.items():
                    walk(sub, f"{here}/{name}")
            elif key in ("additionalProperties", "items", "propertyNames", "not", "contains"):
                walk(value, here)
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                for index, sub in enumerate(value):
                    walk(sub, f"{here}/{index}")
            elif key == "required":
                props = node.get("properties", {})
                problems.extend(f"{here}: {r!r} is not a property" for r in value if r not in props)

    walk(schema, "#")
    return problems


@pytest.mark.parametrize("kind", ["all", "ecosystem", "team"])
def test_schema_is_valid_json_schema(kind: str, ferry: Callable[..., Any]) -> None:
    result = ferry("schema", "--kind", kind)
    assert result.code == 0, result
    schema = json.loads(result.out)
    _fail_if(_schema_problems(schema), f"`ferry schema --kind {kind}` is not a valid schema")
    if importlib.util.find_spec("jsonschema") is not None:
        import jsonschema

        jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_knows_every_key() -> None:
    """Editors complete keys from the schema: every spec key must be in it."""
    schema = model_json_schema("all")
    in_schema = {
        name for definition in schema["$defs"].values() for name in definition.get("properties", {})
    }
    missing = [
        f"{cls.__name__}.{key}"
        for cls in spec_models()
        if cls.__name__ in schema["$defs"]
        for key in keys_of(cls)
        if key not in in_schema
    ]
    _fail_if(missing, "`ferry schema` lacks these keys")


def _plain(value: Any) -> Any:
    """Positioned YAML values (dict/list subclasses) as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_example_ecosystem_validates_against_the_schema() -> None:
    if importlib.util.find_spec("jsonschema") is None:
        pytest.skip("jsonschema is not installed (it is not a dependency of dataferry)")
    import jsonschema

    problems = []
    with resources.as_file(resources.files("dataferry") / "examples" / "acme") as root:
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))
        assert files, "the example ecosystem has no YAML files"
        for path in files:
            kind = "ecosystem" if path.name == "ferry.yaml" and path.parent == root else "team"
            validator = jsonschema.Draft202012Validator(model_json_schema(kind))
            document = _plain(parse_yaml(path.read_bytes()).value)
            for error in validator.iter_errors(document):
                for leaf in _leaf_errors(error):
                    where = "/".join(str(p) for p in leaf.absolute_path) or "(top)"
                    problems.append(f"{path.relative_to(root)}: {where}: {leaf.message[:160]}")
    _fail_if(
        sorted(set(problems)), "the example ecosystem does not validate against `ferry schema`"
    )


def _leaf_errors(error: Any) -> Iterator[Any]:
    """The most specific errors under a oneOf/anyOf error (what a user would fix)."""
    if not error.context:
        yield error
        return
    deepest = max(len(e.absolute_path) for e in error.context)
    for sub in error.context:
        if len(sub.absolute_path) == deepest:
            yield from _leaf_errors(sub)
