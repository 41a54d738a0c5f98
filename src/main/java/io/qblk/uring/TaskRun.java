package io.qblk.uring;

/**
 * How the kernel runs a ring's completion work (io_uring "task work": ublk command completions,
 * file I/O finishing, poll wake-ups), as IORING_SETUP_* bits.
 *
 * <ul>
 *   <li>{@link #OFF}: the kernel's default. A completion that arrives while the owner thread runs
 *       in user space interrupts it (an IPI and a trip into the kernel) to post the CQE.</li>
 *   <li>{@link #COOP}: COOP_TASKRUN | TASKRUN_FLAG (5.19). No interruption: the work runs the next
 *       time the owner enters the kernel, which it does once per batch anyway; the kernel sets
 *       IORING_SQ_TASKRUN in the SQ flags meanwhile, so the owner enters with GETEVENTS when it
 *       would otherwise skip the syscall. ublksrv sets COOP_TASKRUN on its queue rings.</li>
 *   <li>{@link #DEFER}: COOP plus SINGLE_ISSUER | DEFER_TASKRUN (6.1): the work waits in the ring's
 *       own list until the owner asks for completions (GETEVENTS); only the thread that created the
 *       ring may submit or register, which every {@link RingThread} guarantees.</li>
 * </ul>
 * A kernel that refuses the bits (EINVAL) gets the next weaker mode ({@link IoUring#create}).
 */
public enum TaskRun {
    OFF(0),
    COOP(IoUring.SETUP_COOP_TASKRUN | IoUring.SETUP_TASKRUN_FLAG),
    DEFER(IoUring.SETUP_COOP_TASKRUN | IoUring.SETUP_TASKRUN_FLAG | IoUring.SETUP_SINGLE_ISSUER | IoUring.SETUP_DEFER_TASKRUN);

    private final int setupFlags;

    TaskRun(int setupFlags) {
        this.setupFlags = setupFlags;
    }

    /** The IORING_SETUP_* bits of this mode. */
    public int setupFlags() {
        return setupFlags;
    }

    /** The mode to try when a kernel refuses this one; OFF for OFF. */
    public TaskRun weaker() {
        return this == OFF ? OFF : values()[ordinal() - 1];
    }

    /** The mode a ring created with {@code setupFlags} runs in. */
    public static TaskRun of(int setupFlags) {
        for (int i = values().length - 1; i > 0; i--) {
            TaskRun t = values()[i];
            if ((setupFlags & t.setupFlags) == t.setupFlags) return t;
        }
        return OFF;
    }

    /** The mode of qblk's rings unless QBLK_RING_TASKRUN says otherwise (measured: docs/performance.md). */
    public static final TaskRun DEFAULT = COOP;
    private static final TaskRun CONFIGURED = resolve(io.qblk.util.DebugSwitches.process().taskRun(), System.err);

    /** The mode of this process's rings: {@code QBLK_RING_TASKRUN} ({@link io.qblk.util.DebugSwitches#taskRun()}), read once. */
    public static TaskRun configured() {
        return CONFIGURED;
    }

    /**
     * The mode a QBLK_RING_TASKRUN value names: {@link #DEFAULT} when unset or blank; a value that
     * names no mode also gets the default, with one line on {@code warnings} saying so.
     */
    public static TaskRun resolve(String value, java.io.PrintStream warnings) {
        if (value == null || value.isBlank()) return DEFAULT;
        TaskRun t = parse(value);
        if (t != null) return t;
        warnings.println("qblk: QBLK_RING_TASKRUN=" + value + " is not off, coop or defer; using " + DEFAULT.name().toLowerCase(java.util.Locale.ROOT));
        return DEFAULT;
    }

    /** {@code off}, {@code coop} or {@code defer} (any case); null for anything else. */
    public static TaskRun parse(String s) {
        if (s == null) return null;
        for (TaskRun t : values()) if (t.name().equalsIgnoreCase(s.trim())) return t;
        return null;
    }
}
