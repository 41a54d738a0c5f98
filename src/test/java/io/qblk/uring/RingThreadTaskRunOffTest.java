package io.qblk.uring;

/** {@link RingThreadTest} on rings whose completion work is interrupting ({@link TaskRun#OFF}). */
class RingThreadTaskRunOffTest extends RingThreadTest {
    @Override
    public TaskRun taskRun() {
        return TaskRun.OFF;
    }
}
