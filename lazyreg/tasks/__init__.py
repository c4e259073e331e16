"""Background tasks: a row per task, run in the server's event loop, progress recorded.

Kinds of task are registered with the runner by the layers that define them
(`lazyreg.sync.task` registers `sync`), against the leaf `lazyreg.taskcontext`;
this package imports none of them.
"""
