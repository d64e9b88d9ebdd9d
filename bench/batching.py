"""Batched sends: does one ``sendmmsg`` per frame cost less than one ``sendto`` per packet?

    python -m bench.batching

A viewer's frame is a few packets to one address on one socket (its ICE
pair's), so the only batching open to it is that frame's packets in one
system call.  This measures, on loopback and pinned to one core, what sending
a frame costs each way: ``socket.sendto`` per packet (what the sender does),
and one ``sendmmsg`` through ctypes (the standard library has no binding),
filling its structures per frame as a sender would, and with them built once
(the lower bound of any binding that calls through ctypes).
A reader on another socket drains what arrives, so nothing is dropped for a
full buffer.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import socket
import threading
import time


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


class _SockaddrIn(ctypes.Structure):
    _fields_ = [("sin_family", ctypes.c_ushort), ("sin_port", ctypes.c_uint16),
                ("sin_addr", ctypes.c_uint8 * 4), ("sin_zero", ctypes.c_uint8 * 8)]


def _sendmmsg(libc: ctypes.CDLL, fd: int, address: _SockaddrIn, packets: list[bytes]) -> int:
    count = len(packets)
    vectors = (_Iovec * count)()
    messages = (_Mmsghdr * count)()
    buffers = [ctypes.c_char_p(p) for p in packets]  # keeps each packet's bytes alive for the call
    for i, packet in enumerate(packets):
        vectors[i].iov_base = ctypes.cast(buffers[i], ctypes.c_void_p)
        vectors[i].iov_len = len(packet)
        header = messages[i].msg_hdr
        header.msg_name = ctypes.addressof(address)
        header.msg_namelen = ctypes.sizeof(address)
        header.msg_iov = ctypes.pointer(vectors[i])
        header.msg_iovlen = 1
    return int(libc.sendmmsg(fd, messages, count, 0))


def _drain(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            sock.recv(65536)
        except TimeoutError:
            pass


def measure(frames: int, per_frame: int, size: int) -> dict[str, float]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    address = _SockaddrIn(socket.AF_INET, socket.htons(port), (ctypes.c_uint8 * 4)(127, 0, 0, 1))
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(receiver, stop), daemon=True)
    reader.start()
    packets = [os.urandom(size) for _ in range(per_frame)]
    # The lower bound of the ctypes way: the structures built once, for these very packets (a real
    # sender has new packets each frame and would fill them every time, as _sendmmsg does).
    buffers = [ctypes.c_char_p(p) for p in packets]
    vectors, messages = (_Iovec * per_frame)(), (_Mmsghdr * per_frame)()
    for i, packet in enumerate(packets):
        vectors[i].iov_base, vectors[i].iov_len = ctypes.cast(buffers[i], ctypes.c_void_p), len(packet)
        header = messages[i].msg_hdr
        header.msg_name, header.msg_namelen = ctypes.addressof(address), ctypes.sizeof(address)
        header.msg_iov, header.msg_iovlen = ctypes.pointer(vectors[i]), 1
    results: dict[str, float] = {}
    fd = sender.fileno()
    try:
        for _ in range(2):  # the second round is the one kept: caches and the reader settled
            # The sending thread's own CPU (system calls included); the reader is another thread.
            start = time.thread_time()
            for _ in range(frames):
                for packet in packets:
                    sender.sendto(packet, ("127.0.0.1", port))
            results["sendto"] = (time.thread_time() - start) / frames * 1e6
            start = time.thread_time()
            for _ in range(frames):
                if _sendmmsg(libc, fd, address, packets) != per_frame:
                    raise OSError(ctypes.get_errno(), "sendmmsg sent less than a frame")
            results["sendmmsg"] = (time.thread_time() - start) / frames * 1e6
            start = time.thread_time()
            for _ in range(frames):
                libc.sendmmsg(fd, messages, per_frame, 0)
            results["prebuilt"] = (time.thread_time() - start) / frames * 1e6
    finally:
        stop.set()
        reader.join()
        sender.close()
        receiver.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1100, help="bytes per packet (a VP8 packet of 1 Mbit/s)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # the sender's core; the reader shares it, as a server's kernel work does
    for per_frame in (1, 4, 8):
        found = measure(args.frames, per_frame, args.size)
        print(f"{per_frame} packet(s) of {args.size} bytes a frame: sendto per packet {found['sendto']:.1f} us, "
              f"sendmmsg {found['sendmmsg']:.1f} us ({found['sendmmsg'] / found['sendto'] * 100:.0f} %), "
              f"sendmmsg with its structures prebuilt {found['prebuilt']:.1f} us "
              f"({found['prebuilt'] / found['sendto'] * 100:.0f} %)", flush=True)


if __name__ == "__main__":
    main()
