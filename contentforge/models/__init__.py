"""Models and LoRAs: hub clients, verified downloads, family probing, the recommender and the optimizer.

Plain library code (no Prefect): ``civitai`` and ``huggingface`` search the hubs, ``downloads`` fetches a
file with a size cap, resume and SHA-256 check, ``probe`` reads the model family from the file's tensor
names, ``install`` puts verified files into the database registry (``contentforge.db.registry``).
``analyzer``, ``recommender`` and ``optimizer`` turn a prompt into LoRAs and parameters, and
``explain`` says why in one line.
"""
