"""Reply extraction: the new text of an emailed reply is kept, quoted history and signatures are cut.

Our own fixtures in tests/replies/ cover today's mail clients (text and HTML-only) and "On … wrote:" lines
and Outlook header blocks in many languages; the rest pins down our marker, what is kept beside the
message, HTML to text, and that no input makes trimming fail or slow."""
from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.inbound.extract import Trimmed, html_to_text, reply_from_parts, trim_text
from gateway.markers import HTML_MARKER_ID_PREFIX, REPLY_ABOVE_LINE

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))  # after the project: bench/web.py is no package
from reply_accuracy import load_corpus, normalise  # noqa: E402

REPLIES = Path(__file__).resolve().parent / "replies"
CASES = load_corpus(REPLIES)
HANG_GUARD = 60  # seconds; only catches a hang (speed is measured by bench/reply_accuracy.py)


def finishes(function, *args):
    """Run `function(*args)`; fail instead of hanging forever if it does not return."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result(timeout=HANG_GUARD)


def test_fixture_folder_has_text_and_html_cases():
    # Behaviour: the fixture folder covers both plain-text and HTML-only mail from every client family.
    names = {case.name for case in CASES}
    assert len(CASES) >= 100
    assert sum(case.html is not None for case in CASES) >= 15
    for family in ("gmail", "outlook", "apple_mail", "thunderbird", "yahoo", "protonmail"):
        assert any(name.startswith(family) and name.endswith("_html") for name in names), family
        assert any(name.startswith(family) and not name.endswith("_html") for name in names), family
    for language in ("de", "fr", "es", "pt", "it", "nl", "da", "sv", "no", "pl", "ru", "ja", "zh"):
        assert f"wrote_{language}" in names
        assert f"outlook_headers_{language}" in names


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fixture_reply(case):
    # Behaviour: each fixture's reply is exactly its expected text (after normalising line ends, trailing
    # spaces and outer blank lines).
    assert normalise(reply_from_parts(case.plain, case.html).text) == normalise(case.expected)


def test_trimmed_part_is_kept_beside_the_reply():
    # Behaviour: what was cut (attribution, quote, signature) comes back as `trimmed`, in order.
    body = "Thanks!\n\n-- \nBob Stone\n\nOn Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n> Old text\n"
    result = trim_text(body)
    assert result == Trimmed("Thanks!", "-- \nBob Stone\n\nOn Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> "
                                        "wrote:\n> Old text")


def test_nothing_to_trim_keeps_everything():
    # Behaviour: a body without history or signature is returned whole (inner blank lines and indentation too).
    body = "Formatting and\n\n\nspaces\n\n    code block\n- item"
    assert trim_text(body) == Trimmed(body, "")


@pytest.mark.parametrize("quote", ["", "> ", ">> "])
@pytest.mark.parametrize("wrap", [False, True])
def test_marker_cuts_exactly_quoted_or_rewrapped(quote, wrap):
    # Behaviour: our "reply above this line" marker cuts everything from it down, whether the client quotes
    # it with "> " or re-wraps it, and the client's attribution line above it goes too.
    marker = REPLY_ABOVE_LINE if not wrap else REPLY_ABOVE_LINE.replace(" above ", f" above\n{quote}")
    body = (f"Sounds good.\n\nOn Mon, Jun 5, 2017 at 12:22 PM WorkRate <reply+ab12@reply.test> wrote:\n\n"
            f"{quote}{marker}\n{quote}Kim Lee posted:\n{quote}> the old text\n")
    result = trim_text(body)
    assert result.text == "Sounds good."
    assert "Please type your reply" in result.trimmed


def test_marker_wins_over_text_that_follows():
    # Behaviour: text written below our marker (inside our quoted notification) is never posted.
    body = f"Top reply\n{REPLY_ABOVE_LINE}\nNew text someone typed inside the quote\n"
    assert trim_text(body).text == "Top reply"


@pytest.mark.parametrize("marker_id", [f"{HTML_MARKER_ID_PREFIX}1f", f"x_{HTML_MARKER_ID_PREFIX}1f",
                                       f"m_-9876{HTML_MARKER_ID_PREFIX}1f"])
def test_html_marker_cuts_even_without_quote_structure(marker_id):
    # Behaviour: our hidden HTML marker cuts there, also when a client prefixed its id or dropped the
    # quote structure, and even when the visible marker text was removed.
    html = (f'<div>Looks good.</div><div>Forwarded by a client we do not know:</div>'
            f'<div id="{marker_id}" style="display:none"></div><div>Kim Lee posted in Acme</div>')
    result = reply_from_parts(None, html)
    assert result.text == "Looks good.\nForwarded by a client we do not know:"
    assert "Kim Lee posted" in result.trimmed


def test_html_visible_marker_cuts_when_the_hidden_one_is_gone():
    # Behaviour: a client that drops hidden elements still keeps our visible marker line, which cuts too.
    html = (f"<div>Looks good.</div><div><br></div><div>Please go ahead with the print run.</div>"
            f"<p>{REPLY_ABOVE_LINE}</p><p>Kim Lee posted in Acme</p>")
    assert reply_from_parts(None, html).text == "Looks good.\n\nPlease go ahead with the print run."


def test_plain_part_is_preferred_over_html():
    # Behaviour: with both parts present, the text/plain part is what gets posted.
    result = reply_from_parts("Plain reply\n\n> quoted", "<p>HTML reply</p>")
    assert result.text == "Plain reply"


@pytest.mark.parametrize("plain, html", [(None, None), ("", ""), ("  \n ", None), (None, "<div><br></div>")])
def test_empty_bodies_give_empty_text(plain, html):
    # Behaviour: no body, or only whitespace, gives an empty reply (the gateway refuses it).
    assert reply_from_parts(plain, html).text == ""


def test_only_a_quoted_thread_is_empty():
    # Behaviour: a reply that is nothing but the quoted thread has no new text.
    body = "> On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n>\n>> Old\n"
    assert trim_text(body).text == ""


def test_html_to_text_keeps_paragraphs_lists_links():
    # Behaviour: HTML→text keeps paragraphs, line breaks, lists (nested too), links and preformatted text,
    # and leaves out scripts, styles and hidden elements.
    html = """<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>
    <h1>Title</h1><p>First&nbsp;paragraph<br>second line</p>
    <ul><li>one<ul><li>nested</li></ul></li><li><a href="https://x.test/a">two</a></li></ul>
    <ol><li>first</li><li>second</li></ol>
    <pre>  code
    kept</pre><div style="display:none">hidden</div><p>See <a href="https://x.test/">https://x.test/</a>.</p>
    <blockquote>quoted</blockquote></body></html>"""
    assert html_to_text(html) == (
        "Title\n\nFirst paragraph\nsecond line\n\n- one\n   - nested\n- [two](https://x.test/a)\n\n"
        "1. first\n2. second\n\n  code\n    kept\n\nSee https://x.test/.\n\n> quoted"
    )


@pytest.mark.parametrize("html", [
    "<div", "</div></p></blockquote>", "<a href='javascript:alert(1)'>x</a>", "<<>>&&;;&#0;&#xffffff;",
    "<table><tr><td>a<td>b<tr><td>c</table>", "<p>" * 5000, "<!-- unclosed comment", "<![CDATA[x",
    "<svg onload=alert(1)><p>text", "\x00<p>\x00nul</p>",
])
def test_broken_html_never_raises(html):
    # Behaviour: broken or hostile markup still gives a result, never an exception.
    assert isinstance(reply_from_parts(None, html), Trimmed)
    assert isinstance(html_to_text(html), str)


# ---------- properties ----------

TRICKY_LINES = [
    "", " ", ">", "> quoted", ">> deeper", "C> supercite", "--", "-- ", "__________", "-----Original Message-----",
    "---------- Forwarded message ---------", "From: Kim <kim@a.test>", "Sent: Monday, June 5, 2017 12:22",
    "To: Bob", "Subject: Re: plan", "On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:",
    "On Mon, Jun 5, 2017 at 12:22 PM Kim <", "kim@a.test> wrote:", "Am 05.06.2017 um 12:22 schrieb Kim:",
    "Sent from my iPhone", "Get Outlook for iOS", "-Bob", "```", "    code", REPLY_ABOVE_LINE,
    "##- Please type your reply", "above this line -##", "2017-06-05 12:22 GMT+02:00 Kim <kim@a.test>:",
    "Le 5 juin 2017 à 12:22, Kim <kim@a.test> a écrit :", "在 2017年6月5日 写道：", "Thanks!", "ᐧ",
]
line_strategy = st.one_of(st.sampled_from(TRICKY_LINES), st.text(max_size=80))
body_strategy = st.tuples(
    st.lists(line_strategy, max_size=40),
    st.sampled_from(["\n", "\r\n", "\r"]),
).map(lambda parts: parts[1].join(parts[0]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body_strategy)
def test_trim_text_only_returns_input_lines(body):
    # Behaviour: for any plain-text input, trimming never raises, and every line it returns was a line of
    # the input; together with what was cut it accounts for the input's lines.
    result = trim_text(body)
    source = body.splitlines()
    assert all(line in source for line in result.text.splitlines())
    assert all(line in source for line in result.trimmed.splitlines())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_strategy, max_size=30), st.sampled_from(["quoted-printable", "base64", "8bit"]))
def test_parse_then_trim_only_returns_body_lines(lines, encoding):
    # Behaviour: a whole mail goes through the gateway's parse and then trimming without raising, and the
    # reply only holds lines of the parsed text body.
    from email.message import EmailMessage

    from gateway.inbound.parse import parse_bytes

    mail = EmailMessage()
    mail["From"] = "Bob <bob@acme.test>"
    mail["To"] = "reply+ab12@reply.test"
    mail["Subject"] = "Re: plan"
    mail.set_content("\n".join(lines) + "\n", cte=encoding if encoding != "8bit" else "8bit")
    parsed = parse_bytes(mail.as_bytes())
    result = reply_from_parts(parsed.plain, parsed.html)
    source = (parsed.plain or "").splitlines()
    assert all(line in source for line in result.text.splitlines())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from([
    "<div>", "</div>", "<blockquote type=cite>", "</blockquote>", '<div class="gmail_quote">', "<br>",
    '<div id="divRplyFwdMsg">', '<a href="https://x.test">', "</a>", "<ul>", "<li>", "</ul>", "<pre>", "</pre>",
    f'<div id="{HTML_MARKER_ID_PREFIX}1" style="display:none">', '<div class="moz-cite-prefix">',
    "On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:", "&nbsp;", "&", "<", ">",
]), st.text(max_size=20)), max_size=60))
def test_html_never_raises(parts):
    # Behaviour: any tag soup gives a reply and a text conversion, never an exception.
    html = "".join(parts)
    assert isinstance(reply_from_parts(None, html).text, str)
    assert isinstance(html_to_text(html), str)


# ---------- no input makes it slow (hang guards only; timings are in bench/reply_accuracy.py) ----------

MB = 1_000_000


def _quote_lines() -> str:
    return ("Thanks, see below.\n\nOn Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n"
            + "> a line of the long quoted history, again and again\n" * (MB // 52))


def _attribution_like_lines() -> str:
    rng = random.Random(7)
    return "".join(f"On {rng.randint(1, 28)} Jun 2017 at 12:{rng.randint(10, 59)} Kim{rng.randint(0, 99999)} "
                   f"<kim@a.test>\n" for _ in range(MB // 45))


@pytest.mark.parametrize("body, expected_start", [
    (_quote_lines(), "Thanks, see below."),
    ("x" * MB, "xxx"),
    ("On " * (MB // 3) + "wrote:", "On On"),
    (":" * MB, ":::"),
    ("From: a\nSent: b\n" * (MB // 16), "From: a"),
    ("\n" * MB + "text", "text"),
    ("text\n-----\n" * (MB // 11), "text"),
    (_attribution_like_lines(), "On "),
    ((">" * 2000 + " x\n") * 400, ">>>"),
    ("```\n" * (MB // 4), "```"),
    ("a\n" * (MB // 2), "a\na"),
    ("a:\n" * (MB // 3), "a:"),
    ("@\n" * (MB // 2), "@"),
    ("hi\n" + "a>\n" * (MB // 3), "hi"),
    ("hi\n" + ">\n" * (MB // 2), "hi"),
    ("hi\n" + "please type " * (MB // 12), "hi"),
])
def test_pathological_bodies_finish(body, expected_start):
    # Behaviour: a 1 MB body with thousands of quote lines, or pathological lines, is trimmed (no hang,
    # no regular-expression blow-up) and the result still starts with the reply.
    result = finishes(trim_text, body)
    assert result.text.startswith(expected_start)


@pytest.mark.parametrize("html", [
    "<div>hi</div><blockquote type=cite>" + "<div>quoted line</div>" * (MB // 22) + "</blockquote>",
    "<div>" * 100_000 + "hi" + "</div>" * 100_000,
    "<blockquote>" * 50_000 + "hi",
    '<a href="https://x.test/">hi ' * (MB // 31),
    "<p>hi " + "word " * (MB // 5),
    "hi" + "<br>" * (MB // 4),
    "<p>hi</p>" + "<!--" * (MB // 4),
    "<p>hi</p>" + "</x " * (MB // 4),
    "<p>hi</p>" + "<?x " * (MB // 4),
    "<p>hi</p>" + "<" * MB,
    "<p>hi</p>" + "&#65;" * (MB // 5),
    "<p>hi</p>" + '<div class="gmail_quote_x">' * (MB // 27),
    "<p>hi</p>" + '<a href="https://x.test/"><span>hi ' * (MB // 33),
    '<p>hi</p><div title="' + "<b>x</b>" * (MB // 8),
])
def test_pathological_html_finishes(html):
    # Behaviour: huge, deeply nested or unclosed HTML is converted (no recursion error, no hang).
    result = finishes(reply_from_parts, None, html)
    assert "hi" in result.text


# ---------- huge bodies: bounded work, same reply ----------

ATTRIBUTION = "On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:"
QUOTE_LINE = "> a line of the long quoted history"


def test_answer_below_a_huge_quote_is_kept():
    # Behaviour: an answer written below 30,000 quoted lines is found (the quote is skipped, not examined line
    # by line), its signature is cut, and the whole quote is kept beside it.
    body = "\n".join([ATTRIBUTION, *[QUOTE_LINE] * 30_000, "", "My answer.", "", "-- ", "Bob", ""])
    result = finishes(trim_text, body)
    assert result.text == "My answer."
    assert result.trimmed.count(QUOTE_LINE) == 30_000
    assert result.trimmed.startswith(ATTRIBUTION) and result.trimmed.endswith("-- \nBob")


def test_reply_above_a_huge_quote_and_a_footer():
    # Behaviour: a short reply above a 25,000-line quote followed by a list footer keeps only the reply.
    body = "\n".join(["Thanks!", "", ATTRIBUTION, *[QUOTE_LINE] * 25_000, "", "___", "list footer"])
    assert finishes(trim_text, body) == Trimmed("Thanks!", body[len("Thanks!\n\n"):])


def test_signature_and_history_at_the_end_of_a_huge_text_are_cut():
    # Behaviour: past the lines of text examined from the top, the last lines of text are examined too, so a
    # signature and history below 25,000 lines of pasted text are still cut.
    log = [f"log line {n}" for n in range(25_000)]
    body = "\n".join(["See the log:", *log, "-- ", "Bob", "", ATTRIBUTION, *[QUOTE_LINE] * 100])
    result = finishes(trim_text, body)
    assert result.text == "\n".join(["See the log:", *log])
    assert result.trimmed.startswith("-- \nBob")


def test_huge_html_quote_beyond_the_parsed_part_is_cut():
    # Behaviour: in HTML too big to parse whole, the quote container is found past the parsed part and cut;
    # the new text (parsed or not) is the reply, the quote goes beside it.
    new = "".join(f"<div>new line {n}</div>" for n in range(5000))
    html = (f'{new}<div class="gmail_quote"><div class="gmail_attr">{ATTRIBUTION}</div><blockquote>'
            + "<div>old text</div>" * 5000 + "</blockquote></div>")
    result = finishes(reply_from_parts, None, html)
    assert result.text.startswith("new line 0\nnew line 1\n")
    assert "new line 4999" in result.text and "old text" not in result.text
    assert result.trimmed.count("old text") == 5000


def test_huge_html_marker_beyond_the_parsed_part_cuts():
    # Behaviour: our hidden marker is found past the parsed part of a huge HTML body and cuts there.
    html = ("<p>Looks good.</p>" + "<p>more of the reply</p>" * 3000
            + f'<div id="x_{HTML_MARKER_ID_PREFIX}1f" style="display:none"></div><p>Kim Lee posted in Acme</p>')
    result = finishes(reply_from_parts, None, html)
    assert result.text.startswith("Looks good.") and result.text.endswith("more of the reply")
    assert "Kim Lee posted" not in result.text


def test_huge_html_quote_keywords_outside_a_quote_start_cut_nothing():
    # Behaviour: a quote keyword in text, or an element that only looks like Outlook's header box, past the
    # parsed part of a huge body does not cut the reply.
    html = ("<p>hi</p>" + "<p>the gmail_quote class is used by Gmail</p>" * 3000
            + '<div style="border-top:solid #E1E1E1 1.0pt">no header here</div><p>the end</p>')
    result = finishes(reply_from_parts, None, html)
    assert result.text.startswith("hi") and result.text.endswith("the end")


def test_huge_html_text_past_the_parsed_part_is_converted():
    # Behaviour: past the parsed part, block tags still end lines, tags, styles and comments go and character
    # references are decoded.
    html = ("<p>top</p>" + "<p>para</p>" * 3000
            + "<style>p { color: red }</style><!-- note --><div>Fish &amp; chips<br>tea&nbsp;time</div>")
    text = finishes(html_to_text, html)
    assert text.startswith("top\n\npara\n\npara")
    assert text.endswith("Fish & chips\ntea\u00a0time") or text.endswith("Fish & chips\ntea time")
    assert "color" not in text and "note" not in text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(line_strategy, min_size=3, max_size=8), st.lists(line_strategy, max_size=8),
       st.integers(min_value=7_000, max_value=12_000))
def test_huge_body_only_returns_input_lines(repeated, tail, count):
    # Behaviour: a body too long to be examined line by line (over 20,000 lines) still only returns lines of
    # the input, in the reply and in what was cut.
    body = "\n".join(repeated * count + tail)
    result = finishes(trim_text, body)
    source = set(body.splitlines())
    assert all(line in source for line in result.text.splitlines())
    assert all(line in source for line in result.trimmed.splitlines())


def test_contact_block_and_notice_after_the_reply_go_and_the_closing_stays():
    # Behaviour: a contact block and a legal notice below the reply go; the closing and name above them stay.
    body = ("The invoice is attached.\n\nBest regards,\nKaren Green\nGraphic Designer\nTel: +44 20 7946 0958\n"
            "karen@webby.test\nwww.webby.test\n\nThe content of this email is confidential and intended for the "
            "recipient specified in message only.\n")
    result = trim_text(body)
    assert result.text == "The invoice is attached.\n\nBest regards,\nKaren Green"
    assert "Tel: +44" in result.trimmed and "confidential" in result.trimmed


def test_contact_details_introduced_by_the_writer_stay():
    # Behaviour: contact details the writer introduces ("My new details:") are the reply, not a footer.
    body = "Here are my new details:\n\nKaren Green\nTel: +44 20 7946 0958\nkaren@webby.test\n"
    assert trim_text(body).text == body.strip()


@pytest.mark.parametrize("body", ["https://acme.test/brand\n", "See https://acme.test/a\nhttps://acme.test/b\n",
                                  "www.acme.test\nacme.test\n"])
def test_a_body_of_links_alone_never_comes_out_empty(body):
    # Behaviour: links alone are the reply.
    assert trim_text(body).text == body.strip()


def test_list_footer_under_the_quote_goes_with_the_quote():
    # Behaviour: a mailing-list footer below the quoted history does not make the quote an inline answer.
    body = ("Works for me.\n\n> Shall we ship on Friday?\n> -Kim\n\n__\nriak-users mailing list\n"
            "riak-users@lists.basho.test\nhttp://lists.basho.test/mailman/listinfo/riak-users\n")
    assert trim_text(body).text == "Works for me."


def test_device_signoff_ends_the_reply_before_the_unmarked_original():
    # Behaviour: "Sent from my iPhone" ends the reply even when the original follows without quoting.
    body = "Yes, Friday works.\n\nSent from my iPhone\n\nHi Bob, does Friday work for the call?\n"
    assert trim_text(body).text == "Yes, Friday works."


def test_forward_subject_makes_a_header_block_a_forward():
    # Behaviour: in a mail whose subject says "FW:", a header block below the note starts the forwarded message.
    body = ("Can you look at this?\n\nFrom: Some One <some@one.test>\nSent: Mon, 1 Dec 2016 00:13\n"
            "To: Ba Bar <ba@bar.test>\nSubject: Discoursing much?\n\nHello Ba Bar,\n\nDiscoursing much today?\n")
    assert reply_from_parts(body, None).forward is None
    result = reply_from_parts(body, None, "FW: Discoursing much?")
    assert result.text == "Can you look at this?"
    assert result.forward is not None
    assert (result.forward.sender, result.forward.subject) == ("Some One <some@one.test>", "Discoursing much?")
    assert result.post_text == ("Can you look at this?\n\n::: Forwarded message: Discoursing much?\n\n"
                                "**From:** Some One <some@one.test>\n**Date:** Mon, 1 Dec 2016 00:13\n"
                                "**Subject:** Discoursing much?\n\nHello Ba Bar,\n\nDiscoursing much today?\n\n:::")


def test_html_emphasis_is_markdown_against_the_words():
    # Behaviour: bold and italics become Markdown marks placed against the words, across line breaks too.
    assert html_to_text("<p>Hi <b> all </b>and <i>you</i>!</p>") == "Hi **all** and *you*!"
    assert html_to_text("<div><b>one<br>two</b> three<b></b></div>") == "**one**\n**two** three"


def test_closing_typed_below_the_quoted_history_is_kept():
    # Behaviour: a closing typed after the quoted history is the writer's: it stays, the history goes.
    body = ("Here is the doc.\n\nOn Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n> can you send it?\n\n"
            "Cheers,\nBob\n")
    assert trim_text(body).text == "Here is the doc.\n\nCheers,\nBob"


def test_bottom_posted_answer_below_the_history_is_the_reply():
    # Behaviour: with the quoted history on top, the writer's words below it are the reply.
    body = ("On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n> Can you send the doc?\n> And the logo?\n\n"
            "Both are attached.\n\nBob\n")
    assert trim_text(body).text == "Both are attached.\n\nBob"


@pytest.mark.parametrize("body, reply", [
    ("Thanks, will do.-----Original Message-----\nFrom: Kim <kim@a.test>\nSent: Monday, June 5, 2017\n"
     "To: Bob <bob@b.test>\nSubject: Brief\n\nold text\n", "Thanks, will do."),
    ("Sounds good! On Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n> old text\n", "Sounds good!"),
    ("Ja.\n\nAm 5. Juni 2017 um 12:22 schrieb Bob <b@x.test>:\n> old text\n", "Ja."),
])
def test_splitter_sharing_the_reply_line_is_split_off(body, reply):
    # Behaviour: a reply and its splitter on one line: the reply is kept, the splitter and history cut.
    assert trim_text(body).text == reply


def test_quote_broken_by_a_wrapped_link_is_one_quote():
    # Behaviour: the unquoted rest of a wrapped link inside a quote does not make the quote an inline answer.
    body = ("Yes.\n\nOn Mon, Jun 5, 2017 at 12:22 PM Kim <kim@a.test> wrote:\n> see https://example.test/a/very/long\n"
            "/path/rest-of-the-link\n> and tell me\n")
    assert trim_text(body).text == "Yes."
