"""Compel's prompt parsing at a bearable cost: packrat parsing, and one parse per distinct prompt.

Why: compel parses every prompt with pyparsing before it encodes it, and parses it once per text
encoder (SDXL has two), the negative prompt too: four parses per image, each a backtracking parse in
pure Python that holds the GIL. Profiled in the demo's batch (tiny pipeline, the templates' 100-200
word prompts), parsing was 93 % of the generating thread's time (issue 18), and it serialises
every generation slot of a process behind the GIL whatever the device; a prompt with a few weighted
phrases (``(sharp focus:1.2)``) took seconds per parse.

- **Packrat parsing** (pyparsing's memo of partial matches) makes the backtracking linear: the same
  parse, the same result. It is a process-wide pyparsing switch; matplotlib's mathtext turns it on
  the same way when it loads.
- **One parse per distinct prompt**: the parsed prompt (a compel ``Conjunction``, which compel only
  reads) is kept in a bounded cache shared by every replica and encoder, so a negative prompt shared
  by a batch is parsed once, and each prompt once for both of SDXL's encoders.

The embeddings, and so the pixels, are exactly those of compel's own parsing
(``tests/test_prompt_parsing.py``).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import pyparsing
from compel import Compel
from compel.prompt_parser import Conjunction, PromptParser

PARSED_PROMPTS_KEPT = 1024
"""Distinct prompts whose parse is kept: a few batches' worth (each piece's prompt, the negatives)."""

_parsers = threading.local()
"""A parser per thread: a pyparsing grammar keeps state while it parses, so threads do not share one."""


@functools.lru_cache(maxsize=PARSED_PROMPTS_KEPT)
def parse_prompt(prompt: str) -> Conjunction:
    """``prompt`` parsed as ``Compel.parse_prompt_string`` parses it, once per distinct prompt."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = PromptParser()
    return parser.parse_conjunction(prompt)


def share_parses(wrapper: Any) -> Any:
    """``wrapper`` (compel's ``CompelForSD`` or ``CompelForSDXL``) with every ``Compel`` inside it
    parsing through ``parse_prompt``, and packrat parsing on; returns ``wrapper``.

    ``Compel.build_conditioning_tensor`` calls ``self.parse_prompt_string``, a classmethod that builds a
    new parser per call: an attribute of the instance takes its place for that instance only.
    """
    pyparsing.ParserElement.enable_packrat()
    for value in vars(wrapper).values():
        if isinstance(value, Compel):
            setattr(value, "parse_prompt_string", parse_prompt)  # noqa: B010 (an instance attribute)
    return wrapper
