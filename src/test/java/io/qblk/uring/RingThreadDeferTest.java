package io.qblk.uring;

/** {@link RingThreadTest} on rings whose completion work is deferred ({@link TaskRun#DEFER}). */
class RingThreadDeferTest extends RingThreadTest {
    @Override
    public TaskRun taskRun() {
        return TaskRun.DEFER;
    }
}
