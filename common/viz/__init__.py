"""Pictures of runs (``python -m tools.visualize``): ranked lists (:mod:`common.viz.ranked`),
CMC and training curves (:mod:`common.viz.plots`). Framework-free; matplotlib is imported
through :func:`common.optional.require` when a plot is drawn."""
