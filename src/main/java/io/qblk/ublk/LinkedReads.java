package io.qblk.ublk;

import io.qblk.util.DebugSwitches;

/**
 * Whether a ublk queue links a planned file read to its COMMIT_AND_FETCH ({@link UblkQueue}).
 *
 * <p>Only safe where io_uring copies a linked URING_CMD's payload when it is submitted. 6.1 does
 * (a request that joins a link is prepared for async execution at once, which copies the command
 * area). The 6.12 guest's io_uring, as its source reads, does not: a URING_CMD that is not issued at
 * submission keeps a pointer to its slot in the SQE array ("defer memcpy until we need it") and
 * reads it when the read before it completes, by which time the ring thread may have filled that
 * slot with a later SQE, so ublk would take another command's tag and result. Measured on 6.12: tags
 * stuck, fio hung at depth 64 after a randrw warm-up; that this is the cause is not yet confirmed by
 * a run that keeps the slot untouched. So the default is on below 6.10 (the oldest kernel whose io_uring source
 * was read here with that deferral is 6.12; 6.10 and 6.11 are treated like it) and off from 6.10
 * on. {@code QBLK_UBLK_LINKED_READS=0} turns it off everywhere, {@code =1} on everywhere (for a
 * kernel that copies again).
 */
final class LinkedReads {
    private LinkedReads() {}

    /** The decision for this process: the switch, or the running kernel's version. */
    static boolean enabled() {
        Boolean forced = DebugSwitches.process().linkedReads();
        return forced != null ? forced : safeOn(System.getProperty("os.version", ""));
    }

    /** Why {@link #enabled()} is what it is, for the export's start line. */
    static String reason() {
        Boolean forced = DebugSwitches.process().linkedReads();
        if (forced != null) return "QBLK_UBLK_LINKED_READS=" + (forced ? "1" : "0");
        return "kernel " + System.getProperty("os.version", "?");
    }

    /** True for a kernel release below 6.10 ("6.1.0-42-amd64", "6.1.192"). */
    static boolean safeOn(String release) {
        String[] p = release.split("[.-]");
        try {
            int major = Integer.parseInt(p[0]), minor = p.length > 1 ? Integer.parseInt(p[1]) : 0;
            return major < 6 || (major == 6 && minor < 10);
        } catch (NumberFormatException e) {
            return false;
        }
    }
}
