package io.qblk.uring;

/** {@link RingCarrierTest} on rings whose completion work is interrupting ({@link TaskRun#OFF}). */
class RingCarrierTaskRunOffTest extends RingCarrierTest {
    @Override
    public TaskRun taskRun() {
        return TaskRun.OFF;
    }
}
