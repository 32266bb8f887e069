"""The inbound pipeline: what happens to a reply between DATA and the gateway's answer.

Steps, in order (gateway/inbound/pipeline.py STEPS), each filling fields of an InboundMail (mail.py):

1. parse_mail            parse.py         keep the raw mail; flanker, stdlib on broken MIME; every charset decoded
2. drop_automatic_mail   classify.py      bounces (hard ones noted on the notification), auto-replies, our loop
3. authenticate_sender   authenticate.py  From must be the reply token's owner, still active, with access
4. extract_reply_text    extract.py       the new text only: quoted history and signature cut
5. collect_attachments   attachments.py   files stored with safe names; an empty reply is refused
6. store_rows            store.py         InboundEmail row + post_message() in one transaction, once per thread

The driver (pipeline.run) stores through the group commit (gateway/smtp/committer.py: several mails per
transaction; a mail that fails is left out and the batch goes again; every mail answered only after the
commit). Steps put files through mail.files (files.py) and never ask where they run. Recipients are
checked earlier, at RCPT time (authenticate.resolve_recipient).
"""
