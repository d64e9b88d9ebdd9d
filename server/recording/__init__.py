"""The archive: recordings of live sessions, their files and the jobs that follow them."""
