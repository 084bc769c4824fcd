"""Compel's prompt parsing at a bearable cost: packrat parsing, and one parse per distinct prompt.

Why: compel parses every prompt with pyparsing before it encodes it, and parses it once per text
encoder (SDXL has two), the negative prompt too: four parses per image, each a backtracking parse in
pure Python that holds the GIL. Profiled in the demo's batch (tiny pipeline, the templates' 100-200
word prompts), parsing was 93 % of the generating thread's time (issue 18), and it serialises
every generation slot of a process behind the GIL whatever the device; a long prompt with a weighted
phrase repeated took seconds per parse (``benchmarks/prompt_encoding.py``).

- **Packrat parsing** (pyparsing's memo of partial matches) spares the backtracking most of its
  repeated work: the same parse, the same result. It is a process-wide pyparsing switch;
  matplotlib's mathtext turns it on the same way when it loads.
- **One parse per distinct prompt**: the parsed prompt (a compel ``Conjunction``, which compel only
  reads) is kept in a bounded cache shared by every replica and encoder, so a negative prompt shared
  by a batch is parsed once, and each prompt once for both of SDXL's encoders.

The embeddings, and so the pixels, are exactly those of compel's own parsing
(``tests/test_prompt_parsing.py``).
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import pyparsing
from compel import Compel
from compel.prompt_parser import Conjunction, PromptParser

logger = logging.getLogger(__name__)

PARSED_PROMPTS_KEPT = 1024
"""Distinct prompts whose parse is kept: a few batches' worth (each piece's prompt, the negatives)."""

_parsing = threading.Lock()
"""One parse at a time through the one shared parser: its grammar is prepared (``streamline``) on
its first parse outside pyparsing's own lock, and the memo is emptied between parses (below).
pyparsing already runs packrat parses one at a time under its cache lock, and parsing holds the GIL
anyway, so this costs no throughput."""
_parser: PromptParser | None = None


@functools.lru_cache(maxsize=PARSED_PROMPTS_KEPT)
def parse_prompt(prompt: str) -> Conjunction:
    """``prompt`` parsed as ``Compel.parse_prompt_string`` parses it, once per distinct prompt.

    The result is shared by every caller and thread: compel only reads it (it builds new objects from
    it), and so must any other caller.
    """
    global _parser
    with _parsing:
        if _parser is None:
            _parser = PromptParser()
        try:
            return _parser.parse_conjunction(prompt)
        finally:
            # The memo keeps the parse's failed matches as exceptions, and raising a cached one again
            # gives it a traceback, whose frames hold every frame above the parse (the generating
            # replica, its pipeline) until the next parse: an evicted model stayed in memory
            # (tests/test_image_pool.py). Emptied once the parse is done.
            pyparsing.ParserElement.reset_cache()


def share_parses(wrapper: Any) -> Any:
    """``wrapper`` (compel's ``CompelForSD`` or ``CompelForSDXL``) with every ``Compel`` inside it
    parsing through ``parse_prompt``, and packrat parsing on; returns ``wrapper``.

    ``Compel.build_conditioning_tensor`` calls ``self.parse_prompt_string``, a classmethod that builds a
    new parser per call: an attribute of the instance takes its place for that instance only.
    """
    pyparsing.ParserElement.enable_packrat()
    shared = 0
    for value in vars(wrapper).values():
        if isinstance(value, Compel):
            value.parse_prompt_string = parse_prompt  # an instance attribute, in place of the classmethod
            shared += 1
    if not shared:  # a compel release that keeps its encoders elsewhere: still correct, only slower
        logger.warning(
            "compel's %s holds no Compel: its prompts are parsed by compel itself, four parses per image",
            type(wrapper).__name__,
        )
    return wrapper
