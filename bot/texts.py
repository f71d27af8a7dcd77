"""What the chat bot says: every text a user reads, in one place so its voice stays one voice.
Plain text (adapters send it as is); `{fields}` are filled in by the code that sends it."""

from __future__ import annotations

# How users read each look mode (engine.api.MODES; capitalised on buttons), and /mode's explanations.
MODE_NAMES = {"natural": "natural look", "full": "full look"}
MODE_HELP = {
    "natural": "makeup on your own skin; face paint on the reference is left out.",
    "full": "the whole look of the reference face, face paint and patterns too.",
}
MODE_USAGE = "The look mode is natural or full, e.g. /mode full."
STRENGTH_USAGE = "Strength is a number from 0 to 100, e.g. /strength 60."

# The help's first part; commands.help_text adds the command list from the command table.
HELP_INTRO = """Face Lab puts the makeup of any photo on your selfie.

1. Send your selfie.
2. Send the reference: a photo of a face wearing the makeup you want.
I reply with your selfie wearing that makeup.

You can also send both as an album (selfie first), caption a photo "me" or "ref" to say which is which, \
or reply with your selfie to someone's photo to borrow their makeup."""

PRIVACY_TEXT = """What Face Lab keeps:
- Your photos and results: in memory only, never on disk. Unpaired photos are dropped after \
{pending}; a result's inputs stay {results} so its buttons work, then they are dropped too.
- In the database: your platform user id ({user}), preferred strength and look mode (and a ban, if an \
operator sets one), and for each try-on its time, chat id and type, outcome, error kind and timings. \
Never an image. Try-on records are deleted {retention}.
- In the logs: job ids, outcomes and timings; a user id only where the operator needs it (a ban, a \
refused operator command, a record the database could not take). Never an image.
/forget deletes all of it at once."""

UNKNOWN_COMMAND = "I don't know /{name}. Send /help to see what I can do."
ADMINS_ONLY = "This command is only for the bot's operator."
UNUSABLE_HINT = (
    "I only work with photos: send your selfie, then a photo of a face wearing the makeup you "
    "want. /help tells more."
)
GOT_SELFIE = (
    "Got your selfie. Now send the reference: a photo of a face wearing the makeup "
    "you want (or choose a preset with /look NAME)."
)
GOT_REFERENCE = "Got the reference. Now send your selfie."
NOT_TWO_PHOTOS = (
    "I got {count} photos at once, but I need exactly two: your selfie and the "
    "reference (a face wearing the makeup you want)."
)
# Result captions when no caption said which photo is which.
ORDER_NOTE = "Taken in order: your {selfie} photo as the selfie, the {reference} as the reference."
SWAPPED_NOTE = (
    "Your {reference} photo looks made up, so I took it as the reference and the {selfie} as the selfie."
)
PAINT_LEFT_OUT = (
    "Your reference wears face paint that natural mode leaves out. Press “Full look” to "
    "put it on too, or send /mode full to always get the whole look."
)

RESTARTED_NOTICE = "I was restarted and no longer have these photos. Please send them again."
EXPIRED_NOTICE = "This result has expired (I keep photos for {kept} only). Send them again."
NOT_YOUR_RESULT = "Only the person who asked for this result can use its buttons."
QUEUE_PLACE = "There {jobs} ahead of yours; I'll reply here when it's ready."


def minutes(seconds: float) -> str:
    """A duration for people: "1 minute", "5 minutes" (at least one)."""
    whole = max(1, round(seconds / 60))
    return "1 minute" if whole == 1 else f"{whole} minutes"
