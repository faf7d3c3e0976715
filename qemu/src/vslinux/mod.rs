//! The side-by-side benchmark against a Linux guest doing the same job with
//! Netfilter (`pias-qemu bench --vs-linux`, issue 9): the baseline guest built
//! from Debian's packages (`guest`), the LAN both run on (`lan`), the shared
//! load generators (`measure`), booting each side (`side`) and the table
//! (`compare`).

pub mod compare;
pub mod guest;
pub mod lan;
pub mod measure;
pub mod side;
