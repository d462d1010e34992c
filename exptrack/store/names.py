"""Run names and experiment names: the readable name generated from a run id, and the rule for names.

A run's name is for people (tables, ``show NAME``); its id stays the key.  When none is given the
name is derived from the id's random bits, so the same id always gets the same name: a run logged
by an older version (no stored name) reads with the name it would have been given.
"""

from __future__ import annotations

import zlib

from exptrack.errors import InvalidRecordError

DEFAULT_EXPERIMENT = "default"

_ADJECTIVES = (
    "amber", "bold", "brave", "brisk", "calm", "clever", "cosmic", "crisp", "dapper", "eager", "early", "fancy",
    "fast", "fierce", "gentle", "glad", "golden", "grand", "happy", "hardy", "honest", "humble", "icy", "jolly",
    "keen", "kind", "lively", "lucky", "merry", "mighty", "misty", "modest", "noble", "olive", "plucky", "polite",
    "proud", "quick", "quiet", "rapid", "rosy", "royal", "rustic", "shiny", "silent", "silver", "sleek", "smart",
    "snowy", "solid", "sunny", "swift", "tidy", "tiny", "vivid", "warm", "wild", "wise", "witty", "young",
    "zany", "zesty", "azure", "coral",
)
_NOUNS = (
    "badger", "bear", "beaver", "bison", "cat", "cobra", "condor", "crane", "deer", "dingo", "dolphin", "eagle",
    "falcon", "ferret", "finch", "fox", "gecko", "heron", "hippo", "ibis", "jaguar", "koala", "lemur", "lion",
    "llama", "lynx", "magpie", "marten", "mole", "moose", "newt", "otter", "owl", "panda", "parrot", "pelican",
    "puffin", "quail", "rabbit", "raven", "robin", "salmon", "seal", "shark", "sloth", "snail", "sparrow", "squid",
    "stork", "swan", "tapir", "tiger", "toad", "trout", "turtle", "viper", "walrus", "weasel", "whale", "wolf",
    "wombat", "yak", "zebra", "hare",
)

_MAX_NAME = 200


def generated_name(run_id: str) -> str:
    """A short readable name (``brave-otter-3f2a``) derived from ``run_id``; stable for an id."""
    digest = zlib.crc32(run_id.encode("utf-8", "surrogatepass"))
    # the last id characters are the random ones for exptrack's ids: mix them in explicitly
    digest ^= zlib.crc32(run_id[-8:].encode("utf-8", "surrogatepass")) << 7
    adjective = _ADJECTIVES[digest % len(_ADJECTIVES)]
    noun = _NOUNS[(digest >> 6) % len(_NOUNS)]
    return f"{adjective}-{noun}-{(digest >> 12) & 0xFFFF:04x}"


def check_name(name: object, what: str = "name") -> str:
    """A run or experiment name as stored: a non-empty single line of at most 200 characters."""
    if type(name) is not str or not name.strip() or "\n" in name or "\r" in name or len(name) > _MAX_NAME:
        raise InvalidRecordError(
            f"{what} must be a non-empty single line of at most {_MAX_NAME} characters, not {name!r}", what
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecordError(f"{what} {name!r} cannot be stored as UTF-8", what) from None
    return name
