"""Analytics and the learning loop: collect how posts perform, learn what works, feed it back.

No Prefect here: collectors (one module per platform, plus the CSV import and a labelled simulator)
produce ``PostMetrics``; ``contentforge.db.analytics`` stores them; ``frames``, ``timing``,
``drops``, ``ranking`` and ``prediction`` learn from them with pandas, statsmodels and scikit-learn.
"""
