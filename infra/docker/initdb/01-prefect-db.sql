-- The Prefect server keeps its own database next to ContentForge's.
CREATE DATABASE prefect OWNER contentforge;
