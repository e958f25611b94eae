"""How ``stdlib_docstrings.txt.gz`` was made (run once with CPython 3.11.7; kept for the record).

``python qlearn/lm/data/extract_corpus.py`` writes the docstrings of the modules below (the module's, then
those of its public classes, their public methods and its public functions, in name order), keeps newline
and printable ASCII only, and collapses runs of blank lines. Another Python version gives a different text,
which is why the output is committed and the package never runs this script.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import re
import warnings
from pathlib import Path

MODULES = """abc argparse ast asyncio.tasks asyncio.events base64 bisect calendar collections contextlib copy csv
dataclasses datetime decimal difflib email.message enum fractions functools getopt gettext glob gzip hashlib heapq
hmac html.parser http.client http.server imaplib inspect io ipaddress itertools json logging mailbox mimetypes
numbers operator optparse os pathlib pickle pprint queue random re shlex shutil smtplib socket socketserver
statistics string subprocess tarfile tempfile textwrap threading timeit tokenize traceback turtle typing
unittest.case unittest.mock urllib.parse urllib.request uuid warnings weakref xml.dom.minidom
xml.etree.ElementTree zipfile pydoc configparser codecs locale ftplib nntplib poplib telnetlib
cmd code codeop doctest pdb profile pstats sched selectors ssl struct sysconfig tkinter trace zoneinfo
concurrent.futures multiprocessing.pool multiprocessing.managers sqlite3 wave plistlib netrc graphlib
secrets signal platform pkgutil runpy importlib.metadata importlib.resources ctypes filecmp fileinput fnmatch
quopri binascii stringprep unicodedata""".split()


def module_text(name: str) -> str:
    mod = importlib.import_module(name)
    docs = [d for d in [inspect.getdoc(mod)] if d]
    for attr, obj in sorted(vars(mod).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if obj.__doc__:
                docs.append(inspect.cleandoc(obj.__doc__))
            if inspect.isclass(obj):
                for meth, fn in sorted(vars(obj).items()):
                    if not meth.startswith("_") and inspect.isfunction(fn) and fn.__doc__:
                        docs.append(inspect.cleandoc(fn.__doc__))
    return f"# {name}\n\n" + "\n\n".join(docs)


def main() -> None:
    warnings.simplefilter("ignore")  # deprecated modules (nntplib, telnetlib) warn on import
    text = "\n\n".join(module_text(m) for m in MODULES) + "\n"
    text = "".join(c for c in text.replace("\t", "    ") if c == "\n" or 32 <= ord(c) < 127)
    text = re.sub(r"\n{3,}", "\n\n", text)
    out = Path(__file__).with_name("stdlib_docstrings.txt.gz")
    out.write_bytes(gzip.compress(text.encode("ascii"), compresslevel=9, mtime=0))
    print(f"{len(text):,} characters from {len(MODULES)} modules -> {out.name}")


if __name__ == "__main__":
    main()
