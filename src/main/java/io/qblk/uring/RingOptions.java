package io.qblk.uring;

import java.time.Duration;

/**
 * How to set up a {@link RingThread}'s ring.
 *
 * @param entries      SQ entries (power of two; the kernel clamps and rounds), CQ gets twice as many
 * @param setupFlags   extra IORING_SETUP_* bits, e.g. {@link IoUring#SETUP_SQE128} | {@link IoUring#SETUP_CQE32}
 * @param closeTimeout how long close() waits for in-flight operations before failing them
 * @param carrier      whether the owner thread also carries the virtual threads made by
 *                     {@link RingThread#newThread} (when {@link VirtualCarrier#available()}; otherwise
 *                     they run on the default scheduler)
 * @param taskRun      how the kernel runs the ring's completion work (weaker where the kernel refuses it);
 *                     {@link TaskRun#configured()} (QBLK_RING_TASKRUN) unless given
 */
public record RingOptions(int entries, int setupFlags, Duration closeTimeout, boolean carrier, TaskRun taskRun) {
    public RingOptions {
        if (entries < 1 || entries > 32768) throw new IllegalArgumentException("ring entries " + entries);
        if (taskRun == null) throw new IllegalArgumentException("taskRun");
    }

    public RingOptions(int entries, int setupFlags, Duration closeTimeout) {
        this(entries, setupFlags, closeTimeout, false);
    }

    public RingOptions(int entries, int setupFlags, Duration closeTimeout, boolean carrier) {
        this(entries, setupFlags, closeTimeout, carrier, TaskRun.configured());
    }

    /** 128 entries, 64-byte SQEs and 16-byte CQEs, 5 s close timeout. */
    public static RingOptions defaults() {
        return new RingOptions(128, 0, Duration.ofSeconds(5));
    }

    /** A ring for a ublk queue: SQE128 (80-byte command area) and CQE32, carrying the queue's tag threads. */
    public static RingOptions forUblk(int entries) {
        return new RingOptions(entries, IoUring.SETUP_SQE128 | IoUring.SETUP_CQE32, Duration.ofSeconds(5), true);
    }

    public RingOptions withEntries(int n) {
        return new RingOptions(n, setupFlags, closeTimeout, carrier, taskRun);
    }

    public RingOptions withSetupFlags(int flags) {
        return new RingOptions(entries, flags, closeTimeout, carrier, taskRun);
    }

    public RingOptions withCloseTimeout(Duration d) {
        return new RingOptions(entries, setupFlags, d, carrier, taskRun);
    }

    /** Whether the owner thread carries the ring's virtual threads (see {@link RingThread#newThread}). */
    public RingOptions withCarrier(boolean on) {
        return new RingOptions(entries, setupFlags, closeTimeout, on, taskRun);
    }

    public RingOptions withTaskRun(TaskRun t) {
        return new RingOptions(entries, setupFlags, closeTimeout, carrier, t);
    }
}
