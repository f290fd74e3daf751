"""The host flows of ping_core.account that the CLI and the browser share: inviting a user, the
KeyPackage top-up (durable before published, batched), admitting a new device of the account,
listing an account's devices (what the directory could lie about refused)."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from typing import AsyncIterator

import pytest

from ping_core.account import admit_new_device, invite_user, list_devices, take_welcomes, top_up_key_packages
from ping_core.admit import AdmitChatStatus
from ping_core.device import DeviceInfo
from ping_core.errors import IdentityError, InvalidInput
from ping_core.identity import Identity
from ping_core.ids import UserId
from ping_core.link import LinkKeyPair, LinkRequestCode
from ping_core.message import MessageKind

from .support import NOW, World, pair


async def test_invite_user_adds_every_device_not_yet_a_member() -> None:
    w = World()
    alice, bob = await w.device("alice"), await w.device("bob")
    conv = await alice.client.create_conversation("chat", NOW)
    await bob.publish(2)
    assert await invite_user(alice.client, conv, bob.identity.user_id, NOW) == 1  # one device, one KeyPackage claimed
    assert await bob.join_welcomes() == [conv]
    with pytest.raises(InvalidInput, match="no device to add"):
        await invite_user(alice.client, conv, bob.identity.user_id, NOW)  # already a member
    assert await invite_user(alice.client, conv, bob.identity.user_id, NOW, required=False) == 0


async def test_invite_user_refuses_another_accounts_key_package() -> None:
    w = World()
    alice, bob, mallory = await w.device("alice"), await w.device("bob"), await w.device("mallory")
    conv = await alice.client.create_conversation("chat", NOW)

    class Directory:  # the server hands out mallory's KeyPackage as bob's
        def __getattr__(self, name: str) -> object:
            return getattr(alice.raw_transport, name)

        async def claim_key_packages(self, user: object) -> list[tuple[object, bytes]]:
            return [(mallory.device_id, await mallory.claim())]

    alice.client._state.transport = Directory()  # type: ignore[assignment]
    with pytest.raises(IdentityError):
        await invite_user(alice.client, conv, bob.identity.user_id, NOW)
    assert {m.device_id for m in alice.client.members(conv)} == {alice.device_id}


async def test_list_devices_lists_an_account_and_refuses_a_lying_directory() -> None:
    w = World()
    alice, bob = await w.device("alice"), await w.device("bob")
    phone = await w.device("phone", alice.identity)
    a, b = alice.identity.user_id, bob.identity.user_id
    assert [(d.device_id, d.user_id) for d in await list_devices(alice.client)] == [(alice.device_id, a), (phone.device_id, a)]
    assert [(d.device_id, d.user_id) for d in await list_devices(alice.client, b)] == [(bob.device_id, b)]

    real = alice.raw_transport.list_devices
    mine, (bobs,) = await real(a), await real(b)
    lies: dict[str, list[DeviceInfo]] = {
        "another account's device as alice's": [*mine, bobs],
        "an id that is not its key's": [mine[0], dataclasses.replace(mine[1], signing_public_key=bobs.signing_public_key)],
        "a device twice": [mine[0], mine[0]],
    }
    for what, lie in lies.items():

        async def lying(user: UserId, lie: list[DeviceInfo] = lie) -> list[DeviceInfo]:
            return lie

        alice.raw_transport.list_devices = lying  # type: ignore[method-assign, assignment]
        with pytest.raises(IdentityError):
            await list_devices(alice.client)
            pytest.fail(f"the directory listed {what} and it was taken")
    alice.raw_transport.list_devices = real  # type: ignore[method-assign]
    assert [d.device_id for d in await list_devices(alice.client)] == [alice.device_id, phone.device_id]


async def test_top_up_makes_key_packages_durable_in_the_batch_before_publishing() -> None:
    w = World()
    alice = await w.device("alice")
    events: list[str] = []
    service = w.service
    real_publish = alice.raw_transport.publish_key_packages

    async def publish(*args: object, **kwargs: object) -> None:
        events.append("publish")
        await real_publish(*args, **kwargs)  # type: ignore[arg-type]

    alice.raw_transport.publish_key_packages = publish  # type: ignore[method-assign]

    @asynccontextmanager
    async def batch() -> AsyncIterator[None]:
        events.append("batch")
        yield
        events.append("durable")

    assert await top_up_key_packages(alice.client, 4, batch=batch) == 4
    assert events == ["batch", "durable", "publish"]
    assert service.key_package_count(alice.device_id) == 4
    events.clear()
    assert await top_up_key_packages(alice.client, 4, batch=batch) == 0  # enough on the server, a last-resort one too
    assert events == []


async def test_admit_new_device_links_it_and_admits_it_to_every_chat() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    chat = await pair(w, phone, bob)
    laptop = await w.device("laptop", Identity.import_(phone.client.export_identity()))
    keys = LinkKeyPair.generate()
    request = LinkRequestCode.decode(LinkRequestCode(laptop.device_id, keys.public_key).encode())
    kps = [await laptop.claim(), await laptop.claim()]
    admission = await admit_new_device(phone.client, request, kps, NOW)
    assert admission.device_id == laptop.device_id
    assert [type(o.status) for o in admission.outcomes] == [AdmitChatStatus.Admitted]
    assert admission.admitted == 1 and admission.failed == ()
    # The ticket went as the DeviceGroup Welcome; the chat's Welcome as the chat's.
    kinds = {e.conversation_id for e in await laptop.raw_transport.fetch_welcomes() if e.kind is MessageKind.WELCOME}
    assert chat in kinds
    done = await take_welcomes(laptop.client, NOW, link_keys=keys)
    assert done.linked and chat in done.joined
