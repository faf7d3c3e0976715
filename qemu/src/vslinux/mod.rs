//! The baseline of `bench --vs-linux` (issue 9): what a user would run instead
//! of a PIAS appliance, a minimal Linux guest built from Debian's packages that
//! forwards an anycast address's ports to a target by Netfilter DNAT and
//! masquerade, booted with the same QEMU flags as the appliance.

pub mod guest;
