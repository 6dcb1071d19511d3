"""A reader for the Nuke script text hdrlift ships (``.gizmo`` / ``.nk``), written for these tests.

The subset: ``#`` comment lines; commands of words (``version 14.0 v1``, ``end_group``,
``push 0``); nodes ``Class { knob value ... }``; values that are bare words, double-quoted strings
(backslash escapes; an unescaped ``[`` or ``$`` there would be evaluated by Tcl when the script
loads, so it is recorded as a problem) or ``{braced}`` text (nested, raw). ``addUserKnob {type name
l label t tooltip T text M {items} +FLAG -FLAG}`` lines define user knobs. The node stack is
followed to connect each node to its inputs (``inputs N``; 1 by default, as in Nuke).
"""

from __future__ import annotations

import dataclasses

ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "$": "$", "{": "{", "}": "}"}


class NkSyntaxError(ValueError):
    pass


@dataclasses.dataclass
class Token:
    kind: str  # "word", "string", "brace", "nl"
    text: str
    line: int


def tokenize(text: str, problems: list[str] | None = None, first_line: int = 1) -> list[Token]:
    out: list[Token] = []
    i, line, n = 0, first_line, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            out.append(Token("nl", "\n", line))
            line += 1
            i += 1
            at_line_start = True
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#" and at_line_start:
            while i < n and text[i] != "\n":
                i += 1
            continue
        at_line_start = False
        if c == '"':
            j, buf, start = i + 1, [], line
            while True:
                if j >= n:
                    raise NkSyntaxError(f"line {start}: unterminated string")
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append(ESCAPES.get(nxt, nxt))
                    j += 2
                    continue
                if ch == '"':
                    break
                if ch in "[$" and problems is not None:
                    problems.append(f"line {line}: unescaped {ch!r} in a quoted value is evaluated when the script loads")
                if ch == "\n":
                    line += 1
                buf.append(ch)
                j += 1
            out.append(Token("string", "".join(buf), start))
            i = j + 1
            continue
        if c == "{":
            depth, j, start = 1, i + 1, line
            while j < n and depth:
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                elif text[j] == "\n":
                    line += 1
                j += 1
            if depth:
                raise NkSyntaxError(f"line {start}: unbalanced braces")
            out.append(Token("brace", text[i + 1:j - 1], start))
            i = j
            continue
        if c == "}":
            raise NkSyntaxError(f"line {line}: unexpected '}}'")
        j = i
        while j < n and text[j] not in " \t\r\n{}\"":
            j += 1
        out.append(Token("word", text[i:j], line))
        i = j
    return out


def lines(tokens: list[Token]) -> list[list[Token]]:
    out, cur = [], []
    for t in tokens:
        if t.kind == "nl":
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


@dataclasses.dataclass
class UserKnob:
    type: int
    name: str
    label: str | None = None
    tooltip: str | None = None
    text: str | None = None  # T: a Text_Knob's text or a PyScript_Knob's script
    items: list[str] | None = None  # M: an Enumeration_Knob's items
    flags: list[str] = dataclasses.field(default_factory=list)


def parse_user_knob(body: str, line: int) -> UserKnob:
    words = [t for t in tokenize(body, first_line=line) if t.kind != "nl"]
    if len(words) < 2 or not words[0].text.isdigit():
        raise NkSyntaxError(f"line {line}: addUserKnob needs a type number and a name: {body!r}")
    k = UserKnob(type=int(words[0].text), name=words[1].text)
    i = 2
    while i < len(words):
        w = words[i]
        if w.kind == "word" and w.text in ("l", "t", "T", "M", "n") and i + 1 < len(words):
            v = words[i + 1]
            if w.text == "l":
                k.label = v.text
            elif w.text == "t":
                k.tooltip = v.text
            elif w.text == "T":
                k.text = v.text
            elif w.text == "M":
                k.items = [t.text for t in tokenize(v.text, first_line=line) if t.kind != "nl"]
            i += 2
            continue
        if w.kind == "word" and w.text[:1] in "+-":
            k.flags.append(w.text)
            i += 1
            continue
        raise NkSyntaxError(f"line {line}: unexpected {w.text!r} in addUserKnob")
    return k


@dataclasses.dataclass
class Node:
    cls: str
    line: int
    knobs: dict[str, list[Token]]
    user_knobs: list[UserKnob]
    inputs: list["Node | None"] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.value("name") or ""

    def value(self, knob: str) -> str | None:
        v = self.knobs.get(knob)
        return None if v is None else " ".join(t.text for t in v)

    def token(self, knob: str) -> Token | None:
        v = self.knobs.get(knob)
        return v[0] if v else None


@dataclasses.dataclass
class Script:
    version: str | None
    nodes: list[Node]
    problems: list[str]
    commands: list[list[str]]

    def node(self, name: str) -> Node:
        found = [n for n in self.nodes if n.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} nodes named {name!r}")
        return found[0]


def parse(text: str) -> Script:
    problems: list[str] = []
    script = Script(version=None, nodes=[], problems=problems, commands=[])
    stack: list[Node | None] = []
    for ln in lines(tokenize(text, problems)):
        head = ln[0]
        if head.kind != "word":
            raise NkSyntaxError(f"line {head.line}: a line starts with {head.text!r}")
        if len(ln) == 2 and ln[1].kind == "brace":  # a node
            node = Node(cls=head.text, line=head.line, knobs={}, user_knobs=[])
            body_problems: list[str] = []
            for kl in lines(tokenize(ln[1].text, body_problems, first_line=head.line)):
                key = kl[0].text
                if key == "addUserKnob":
                    if len(kl) != 2 or kl[1].kind != "brace":
                        raise NkSyntaxError(f"line {kl[0].line}: addUserKnob takes one braced list")
                    node.user_knobs.append(parse_user_knob(kl[1].text, kl[0].line))
                    continue
                if key in node.knobs:
                    problems.append(f"line {kl[0].line}: knob {key!r} set twice on {head.text}")
                node.knobs[key] = kl[1:]
            problems.extend(body_problems)
            if not script.nodes:  # the first node is the gizmo / group itself: its inputs are outside
                node.inputs = []
            else:
                count = int(node.value("inputs") or 1)
                if count > len(stack):
                    raise NkSyntaxError(f"line {head.line}: {head.text} takes {count} inputs, the stack holds {len(stack)}")
                node.inputs = [stack.pop() for _ in range(count)]
                stack.append(node)
            script.nodes.append(node)
            continue
        words = [t.text for t in ln]
        script.commands.append(words)
        if head.text == "version":
            script.version = " ".join(words[1:])
        elif head.text == "push" and words[1:] == ["0"]:
            stack.append(None)
        elif head.text == "end_group":
            stack.clear()
        else:
            raise NkSyntaxError(f"line {head.line}: command {head.text!r} is not read here")
    return script
