package io.qblk.uring;

import java.io.IOException;

/**
 * Several {@link UringRequest}s submitted as one operation, their SQEs consecutive in one batch.
 * Linked ({@link RingThread#executeLinked}): a chain with IOSQE_IO_LINK on all but the last, so the
 * kernel starts each only after the previous one succeeded and completes the rest with -ECANCELED
 * when one fails. Unlinked ({@link RingThread#executeAll}): independent requests that the kernel may
 * run in any order and at once. Each request receives its own completion.
 */
public final class LinkedRequests extends UringOp {
    private final UringRequest[] chain;
    private final int from, count;
    private final boolean linked;

    LinkedRequests(UringRequest[] chain) {
        this(chain, 0, chain.length, true);
    }

    /**
     * A reusable linked chain for {@link RingThread#executeForLast}: the caller waits for the last
     * request only, the others complete on the owner thread without waking anyone (their
     * {@link UringRequest#complete} overrides do what must happen then).
     */
    public static LinkedRequests chain(UringRequest... requests) {
        if (requests.length == 0) throw new IllegalArgumentException("an empty chain");
        return new LinkedRequests(requests.clone());
    }

    UringRequest last() {
        return chain[from + count - 1];
    }

    /** Arms the last request for the current thread, the others to complete without waking anyone. */
    void armForLast() {
        for (int i = from; i < from + count - 1; i++) chain[i].armDetached();
        last().arm();
    }

    /** Requests {@code chain[from .. from+count)}, linked or not. */
    LinkedRequests(UringRequest[] chain, int from, int count, boolean linked) {
        this.chain = chain;
        this.from = from;
        this.count = count;
        this.linked = linked;
    }

    @Override
    protected int sqeCount() {
        return count;
    }

    @Override
    protected void prepare(Sqe sqe, int index) {
        chain[from + index].fill(sqe);
        if (linked && index < count - 1) sqe.addFlags(Sqe.IO_LINK);
    }

    @Override
    protected void complete(int index, int res, int flags, long big0, long big1) {
        chain[from + index].complete(0, res, flags, big0, big1);
    }

    @Override
    protected void fail(IOException cause) {
        for (int i = from; i < from + count; i++) if (!chain[i].isDone()) chain[i].fail(cause);
    }
}
