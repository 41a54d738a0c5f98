package io.qblk.uring;

/** {@link RingCarrierTest} on rings whose completion work is deferred ({@link TaskRun#DEFER}). */
class RingCarrierDeferTest extends RingCarrierTest {
    @Override
    public TaskRun taskRun() {
        return TaskRun.DEFER;
    }
}
