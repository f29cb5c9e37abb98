"""Guests: the protocol spoken inside them, the backend contract, and the backends.

- protocol.py: the guest steps script and the wrapper (writers), GuestOutput (the reader);
- machine.py: the contract every backend supplies, GuestRequest/GuestRun, the one registry;
- remote.py: the one per-run protocol over SSH (vng-ssh, snapshot, ssh:NAME);
- vng.py, vngssh.py, snapshot/, target.py: the backends; backends.py registers them and picks one for auto;
- accel.py: KVM or TCG; ssh.py: paramiko; background.py: a guest process that never outlives the harness.
"""
