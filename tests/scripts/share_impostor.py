"""Take over the abstract unix socket name that a procpool owner served its shared objects under,
and answer the first attach as the owner would, with descriptors of our own.

Usage: python share_impostor.py NAME [UID]  (NAME as /proc/net/unix shows it, with its leading "@")
With UID (when started as root), it first becomes that user, as a stranger on the machine.
Prints "listening" once bound, then "sent" if a client presented a key and got our descriptors,
or "refused" if it hung up without one.
"""

from __future__ import annotations

import os
import socket
import sys

name = sys.argv[1]
if len(sys.argv) > 2:  # dropped here, not by Popen(user=): that user may not reach this Python
    uid = int(sys.argv[2])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
    listener.bind("\0" + name.removeprefix("@"))
    listener.listen(1)
    print("listening", flush=True)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(10)
        key = conn.recv(16)
        if not key:
            print("refused", flush=True)
        else:
            ours = [os.open(os.devnull, os.O_RDWR) for _ in range(8)]  # as many as any object has
            socket.send_fds(conn, [b"\x01"], ours)
            print("sent", flush=True)
