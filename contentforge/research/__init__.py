"""Brand research: fetch pages safely, read them as data, extract a sourced ``BrandDNA``.

``research_brand(name, urls, documents, settings=..., provider=...)`` in ``contentforge.research.brand``.
"""
