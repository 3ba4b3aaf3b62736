"""Imported by multiprocessing's forkserver as a preload module (`store.manager.process_context`),
and by nothing else: importing it makes the forkserver ignore SIGINT and SIGTERM, and with it every
process it forks from then on (workers, the ledger's manager), with no window after a fork in which
a signal sent to the whole group could still kill one (see `store.lifeline`). The forkserver
restores only its own SIGCHLD and SIGINT handlers in a child, to what they were after this import.
It also records the forkserver's pid, so that its children die with it (`store.lifeline.as_child_of`).
"""

from store.lifeline import leave_signals_to_the_server, mark_forkserver

leave_signals_to_the_server()
mark_forkserver()
