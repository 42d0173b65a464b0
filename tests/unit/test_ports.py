"""Which port an upstream gets: its own unless taken, else the next free one no other model of ours has."""

from __future__ import annotations

import socket

import pytest

from scheduler.ports import LocalPorts, port_is_free


def test_a_free_assigned_port_is_used():
    ports = LocalPorts([5800, 5801], is_free=lambda port: True)
    assert ports.pick("A", 5800) == 5800


def test_a_taken_port_moves_to_the_next_free_one_skipping_our_other_models_ports():
    taken = {5800, 5802}
    ports = LocalPorts([5800, 5801], is_free=lambda port: port not in taken)
    assert ports.pick("A", 5800) == 5803  # 5801 is B's, 5802 is taken


def test_a_port_held_by_another_of_our_children_is_not_given_twice_until_released():
    ports = LocalPorts([5800, 5801], is_free=lambda port: port != 5800)
    assert ports.pick("A", 5800) == 5802
    ports.release("A")
    assert ports.pick("A", 5800) == 5802  # its own again
    assert ports.pick("C", 5802) == 5803  # held by A, though nothing listens there yet


def test_no_free_port_up_to_65535_is_an_error():
    ports = LocalPorts([65535], is_free=lambda port: False)
    with pytest.raises(OSError, match="no free port"):
        ports.pick("A", 65535)


def test_a_listener_on_loopback_makes_its_port_taken():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
    assert port_is_free(port)
