"""mkdocs hooks: the command reference is generated from the argparse parsers at build time
(one page per command, the text of ``coinfeat COMMAND --help``), so it cannot drift from the CLI."""

from __future__ import annotations

from mkdocs.structure.files import File

from coinfeat.cli import command_help, command_names

FOLDER = "reference/commands"


def command_page(name: str) -> str:
    """The markdown page of one command: its ``--help`` verbatim."""
    return f"# coinfeat {name}\n\n```text\n{command_help(name)}```\n"


def index_page() -> str:
    rows = "\n".join(f"- [`coinfeat {name}`]({name}.md)" for name in command_names())
    return (
        "# Command reference\n\nEach page is what `coinfeat COMMAND --help` prints, generated from the "
        f"parsers when the site is built.\n\n{rows}\n\n```text\n{command_help('coinfeat')}```\n"
    )


def on_config(config):
    """List every command under "Command reference" in the navigation."""
    pages = [{"Commands": f"{FOLDER}/index.md"}] + [
        {f"coinfeat {name}": f"{FOLDER}/{name}.md"} for name in command_names()
    ]
    config["nav"] = [
        {"Command reference": pages} if isinstance(item, dict) and "Command reference" in item else item
        for item in config["nav"]
    ]
    return config


def on_files(files, config):
    files.append(File.generated(config, f"{FOLDER}/index.md", content=index_page()))
    for name in command_names():
        files.append(File.generated(config, f"{FOLDER}/{name}.md", content=command_page(name)))
    return files
