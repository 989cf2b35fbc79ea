#!/usr/bin/env python3
"""Prints sections of README.md as mdoc(7), for the man page (deploy/manual.sh): the man
page says what README says, and README's command table is tested against the command table
in the code, so every command is in both.

  readme-to-mdoc.py README.md 'Commands=COMMANDS' 'Health checks' ...

Each argument names a README heading (its text, or its first words); NAME=TITLE starts a man
section .Sh TITLE with it, NAME alone is a subsection .Ss of the section before. A section is
its own text up to the next heading. The Markdown README uses: paragraphs, '- ' lists,
``` blocks, tables, `code`, **bold** and [links](...).
"""
import re
import sys


def escape(text):
    """Roff's special characters in running text."""
    return text.replace("\\", "\\e")


def inline(text):
    """`code` and **bold** in bold (minus signs in code as \\-), links as their text."""
    text = escape(text.replace("\\|", "|"))
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"`([^`]+)`", lambda m: "\\fB" + m.group(1).replace("-", "\\-") + "\\fR", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", text)


def text_line(text):
    """A text line roff does not take for a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def table(rows):
    """A Markdown table as a tag list: the first column tags, the others follow it."""
    header = [cell.strip() for cell in split_row(rows[0])]
    out = [".Bl -tag -width Ds"]
    for row in rows[2:]:
        cells = [cell.strip() for cell in split_row(row)]
        out.append('.It "' + inline(cells[0]).replace('"', '""') + '"')
        body = [inline(cells[1])] if len(cells) > 1 else []
        for name, cell in zip(header[2:], cells[2:]):
            if cell:
                body.append(f"({inline(name)}: {inline(cell)})" if name else inline(cell))
        out.append(text_line(" ".join(body)))
    out.append(".El")
    return out


def split_row(row):
    """A table row's cells; `\\|` is a '|' inside a cell."""
    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


def convert(lines):
    out, paragraph, items, block = [], [], [], None

    def flush():
        # A paragraph or an item is one text line: a `code` span may cross README's lines.
        if paragraph:
            out.extend([".Pp", text_line(inline(" ".join(paragraph)))])
            paragraph.clear()
        if items:
            out.append(".Bl -bullet")
            for item in items:
                out.extend([".It", text_line(inline(" ".join(item)))])
            out.append(".El")
            items.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        if block is not None:
            if line.startswith("```"):
                # Minus signs, not hyphens: what is copied from the page must run.
                out.extend([".Bd -literal"] + [text_line(escape(code).replace("-", "\\-")) for code in block] + [".Ed"])
                block = None
            else:
                block.append(line)
        elif line.startswith("```"):
            flush()
            block = []
        elif line.startswith("|"):
            flush()
            rows = []
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(lines[index])
                index += 1
            out.extend(table(rows))
            continue
        elif line.startswith("- "):
            if paragraph:
                flush()
            items.append([line[2:].strip()])
        elif line.startswith("  ") and items and line.strip():
            items[-1].append(line.strip())
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            paragraph.append(line.strip())
        index += 1
    flush()
    return out


def sections(readme):
    """Heading text -> the lines up to the next heading (outside code blocks)."""
    found, current, in_code = {}, None, False
    for line in readme.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and re.match(r"#{2,4} ", line):
            current = line.lstrip("#").strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def main():
    readme = sections(open(sys.argv[1], encoding="utf-8").read())
    for argument in sys.argv[2:]:
        name, _, title = argument.partition("=")
        heading = name if name in readme else next((h for h in readme if h.startswith(name + " ")), None)
        if heading is None:
            sys.exit(f"readme-to-mdoc: README has no section '{name}'")
        print(f'.Sh "{title}"' if title else '.Ss "' + re.sub(r"[`*]", "", heading) + '"')
        print("\n".join(convert(readme[heading])))


main()
