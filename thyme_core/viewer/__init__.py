"""The viewer: see what the model did. A local web app (`thyme view`) and static export over a home's catalog:
runs, evaluation results by category, trajectories with their images and crop regions, RL steps and curves, SFT
curves; plus TensorBoard event files of the training scalars (tfevents.py).

Read-only by construction (db.py: an in-memory DuckDB over the Parquet parts), no prefect, no network assets.
"""
