"""The framework-free method layer: one epoch loop shared by every method
(:mod:`common.engine.loop`), the run-folder rules (:mod:`common.engine.rundir`) and signal
handling (:mod:`common.engine.signals`). A method plugs in through its recipe
(``common/recipes/<name>.py``), which returns a :class:`common.engine.loop.MethodRun`."""
