"""The `workrate` command line and the process supervisor: the top layer, above web/ and gateway/.

main.py builds the click group from the command modules (run, people, thread, mail); processes.py runs
the SMTP gateway, web server and outgoing-mail worker in one process; demo.py creates the sample
workspace of `workrate run --demo`.
"""
