"""Study analytics: the event log every act writes (events.py), daily rollups in each user's
own time zone (rollup.py), focus blocks, the dashboards and the admins' live counters."""
