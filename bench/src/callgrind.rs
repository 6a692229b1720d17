//! Callgrind's client requests, so that the cost gate counts only a case's measured section.
//!
//! Under valgrind the magic instruction sequence below is a request to the tool; run natively
//! it is four rotations of a register by 128 bits in all and an exchange of `rbx` with itself,
//! which change nothing but the flags (five instructions, twice per case). The sequence and the request numbers are
//! valgrind's (`valgrind.h`, `callgrind.h`); written out here so that the benchmark needs
//! neither valgrind's headers nor a C compiler.

/// `VG_USERREQ_TOOL_BASE('C', 'T')`: callgrind's first request number.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const CALLGRIND_BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);

/// Writes the counts since the last zeroing to a numbered profile (`OUT.1` for the first
/// dump of `--callgrind-out-file=OUT`), as callgrind's `CALLGRIND_DUMP_STATS`.
pub fn dump_stats() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    request(CALLGRIND_BASE);
}

/// Zeroes the counts of every thread, as callgrind's `CALLGRIND_ZERO_STATS`.
pub fn zero_stats() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    request(CALLGRIND_BASE + 1);
}

/// Sends one argument-less client request to the valgrind tool running this process, if any.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request(code: u64) {
    // The request's block: the code, then five arguments (unused by these two requests).
    let block: [u64; 6] = [code, 0, 0, 0, 0, 0];
    // SAFETY: the rotations of `rdi` by 3 + 13 + 61 + 51 = 128 bits leave it unchanged, and
    // `xchg rbx, rbx` changes nothing (the rotations do set flags, hence no `preserves_flags`); valgrind recognises the sequence, reads the block `rax`
    // points to and writes its answer to `rdx` (the default, 0, when not under valgrind).
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") block.as_ptr(),
            inout("rdx") 0_u64 => _,
            out("rdi") _,
            options(nostack),
        );
    }
}
