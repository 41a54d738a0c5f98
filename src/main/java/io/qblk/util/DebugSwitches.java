package io.qblk.util;

import java.util.Map;
import java.util.Properties;

/**
 * Process-wide debugging and comparison switches, the one place that reads them. They are not
 * configuration of a device (that is passed in: cache mode, file I/O, metadata write mode); they
 * change how this process runs every device, for a measurement or a bug hunt, so they come from
 * the environment (or a system property) of the process:
 *
 * @param ublkTrace    {@code QBLK_UBLK_TRACE=1}: every ublk io command and completion to stderr
 * @param fixedBuffers {@code QBLK_UBLK_FIXED_BUFFERS=0} turns it off: tag buffers stay unregistered
 *                     (plain READ/WRITE instead of READ_FIXED/WRITE_FIXED; for comparison)
 * @param carrier      {@code QBLK_CARRIER=0} or {@code -Dqblk.carrier=off} turns it off: virtual
 *                     threads stay on the default scheduler instead of their queue's ring thread
 * @param nbdRingRecv  {@code QBLK_NBD_RING_RECV=0} turns it off: an NBD connection on a carrier reads its
 *                     socket through the JDK (which parks on the JDK's poller) instead of io_uring RECV
 * @param linkedReads  {@code QBLK_UBLK_LINKED_READS=0} turns it off: a ublk read that is one plain file read
 *                     is served by the tag and committed on its own instead of going out linked to its commit
 * @param linkedWrites {@code QBLK_UBLK_LINKED_WRITES=1} turns it on: the same for a ublk write that is one plain
 *                     file write (docs/ordering.md W2); off by default, as measured slower so far (docs/performance.md)
 * @param taskRun      {@code QBLK_RING_TASKRUN=off|coop|defer} as given (null when unset): how the kernel runs
 *                     the completion work of every io_uring qblk sets up; {@code io.qblk.uring.TaskRun} names
 *                     the modes, its default and what a bad value does
 */
public record DebugSwitches(boolean ublkTrace, boolean fixedBuffers, boolean carrier, boolean nbdRingRecv, boolean linkedReads,
                            boolean linkedWrites, String taskRun) {
    private static final DebugSwitches PROCESS = from(System.getenv(), System.getProperties());

    /** The switches from an environment and system properties. */
    public static DebugSwitches from(Map<String, String> env, Properties props) {
        return new DebugSwitches("1".equals(env.get("QBLK_UBLK_TRACE")), !"0".equals(env.get("QBLK_UBLK_FIXED_BUFFERS")),
                !"0".equals(env.get("QBLK_CARRIER")) && !"off".equals(props.getProperty("qblk.carrier")),
                !"0".equals(env.get("QBLK_NBD_RING_RECV")), !"0".equals(env.get("QBLK_UBLK_LINKED_READS")),
                "1".equals(env.get("QBLK_UBLK_LINKED_WRITES")), env.get("QBLK_RING_TASKRUN"));
    }

    /** This process's switches, read once. */
    public static DebugSwitches process() {
        return PROCESS;
    }
}
