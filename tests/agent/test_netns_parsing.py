"""The harness's reading of ``ss -ltnupH`` (tests/agent/netns.py): needs no namespace."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from tests.agent.netns import Listening, parse_listening

REAL = """\
udp   UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*    users:(("systemd-resolve",pid=311,fd=13))
tcp   LISTEN 0      244        127.0.0.1:5432      0.0.0.0:*    users:(("postgres",pid=88,fd=6))
tcp   LISTEN 0      4096               *:4222            *:*    users:(("nats-server",pid=91,fd=3))
tcp   LISTEN 0      244            [::1]:5432         [::]:*    users:(("postgres",pid=88,fd=7))
udp   UNCONN 0      0   [fe80::fc:ff:fe00:1]%eth0:546 [::]:*    users:(("dhclient",pid=5,fd=4),("helper",pid=6,fd=4))
tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*
"""


def test_real_ss_lines_give_each_owner_its_address_and_port() -> None:
    assert parse_listening(REAL) == [
        Listening("udp", "127.0.0.53", 53, 311, "systemd-resolve"),
        Listening("tcp", "127.0.0.1", 5432, 88, "postgres"),
        Listening("tcp", "*", 4222, 91, "nats-server"),
        Listening("tcp", "::1", 5432, 88, "postgres"),
        Listening("udp", "fe80::fc:ff:fe00:1", 546, 5, "dhclient"),
        Listening("udp", "fe80::fc:ff:fe00:1", 546, 6, "helper"),
    ]  # a socket ss names no process for (another namespace's, or no permission) is left out


owners = st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.-]{0,14}", fullmatch=True),
                            st.integers(1, 4_194_304)), min_size=1, max_size=3)


@given(protocol=st.sampled_from(["tcp", "udp"]), address=st.ip_addresses(),
       interface=st.sampled_from(["", "%lo", "%ferry0"]), port=st.integers(0, 65535),
       owners=owners)
def test_any_socket_line_reads_back(protocol: str, address: ipaddress.IPv4Address
                                    | ipaddress.IPv6Address, interface: str, port: int,
                                    owners: list[tuple[str, int]]) -> None:
    shown = f"[{address}]" if address.version == 6 else str(address)
    users = ",".join(f'("{name}",pid={pid},fd=3)' for name, pid in owners)
    line = (f"{protocol} LISTEN 0 128 {shown}{interface}:{port} 0.0.0.0:* "
            f"users:({users})\n")
    assert parse_listening(line) == [Listening(protocol, str(address), port, pid, name)
                                     for name, pid in owners]
