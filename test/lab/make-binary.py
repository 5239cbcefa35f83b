#!/usr/bin/python3
"""test/lab/make-binary.py LAUNCHER SCRIPT OUT [SIZE GO_BINARY]

A lab fixture binary: the ELF launcher (test/lab/standin/launcher.c, compiled) followed by a zip archive
whose __main__.py is SCRIPT (a Python stand-in). With SIZE, a stored member pads the file to exactly SIZE
bytes with bytes of a real Go binary (GO_BINARY, Debian's kubectl), each copy XORed with its own byte so
that copies do not repeat one another: the padding compresses as a Go binary does (gzip -1 about 0.35).
Without SCRIPT ("-"), OUT is GO_BINARY itself, padded the same way (kubectl at its real size).
"""
import os
import sys
import zipfile


def go_bytes(go_binary, count):
    data = open(go_binary, "rb").read()
    value = int.from_bytes(data, "little")
    copy = 0
    while count > 0:
        copy += 1
        n = min(count, len(data))
        key = int.from_bytes(bytes([copy % 251 + 1]) * len(data), "little")
        yield (value ^ key).to_bytes(len(data), "little")[:n]
        count -= n


def main(launcher, script, out, size=None, go_binary=None):
    size = int(size) if size else None
    tmp = out + ".tmp"
    if script == "-":
        with open(tmp, "wb") as f, open(go_binary, "rb") as src:
            f.write(src.read())
            if size is not None:
                for piece in go_bytes(go_binary, size - f.tell()):
                    f.write(piece)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
        return

    def build(padding):
        with open(tmp, "wb") as f:
            f.write(open(launcher, "rb").read())
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as z:
            z.write(script, "__main__.py")
            if padding:
                info = zipfile.ZipInfo("padding.bin", date_time=(2024, 2, 14, 10, 32, 40))
                info.compress_type = zipfile.ZIP_STORED
                with z.open(info, "w", force_zip64=True) as member:
                    for piece in go_bytes(go_binary, padding):
                        member.write(piece)
        return os.path.getsize(tmp)

    if size is None:
        build(0)
    else:
        overhead = build(1) - 1
        if build(size - overhead) != size:
            sys.exit("make-binary: %s is not %d bytes" % (out, size))
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 6):
        sys.exit(__doc__)
    main(*sys.argv[1:])
