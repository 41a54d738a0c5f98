package io.qblk.uring;

/**
 * A ring test suite that runs in one {@link TaskRun} mode: the suite makes its rings from these
 * options, the default mode's suite is the class itself, a subclass per other mode overrides
 * {@link #taskRun()} (as netty's transports subclass one test suite).
 */
interface RingModeSuite {
    /** The task-run mode of this suite's rings. */
    default TaskRun taskRun() {
        return TaskRun.configured();
    }

    default RingOptions defaults() {
        return RingOptions.defaults().withTaskRun(taskRun());
    }

    default RingOptions forUblk(int entries) {
        return RingOptions.forUblk(entries).withTaskRun(taskRun());
    }
}
