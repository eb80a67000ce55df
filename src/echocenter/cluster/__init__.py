"""How several EchoCenter instances on one PostgreSQL work together (README "Running several instances").

- ``bus``: "something changed" notifications (PostgreSQL LISTEN/NOTIFY, or in-process on SQLite);
- ``instances``: each instance's heartbeat row, and which instances count as alive;
- ``presence``: which instance holds which agent, written in batches;
- ``fleet_lock``: a sweep that must run on one instance at a time;
- ``node``: all of the above started together for this instance, and left at stop.
"""
