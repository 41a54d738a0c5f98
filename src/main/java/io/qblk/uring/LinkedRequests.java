package io.qblk.uring;

import java.io.IOException;

/**
 * Several {@link UringRequest}s submitted as one chain of linked SQEs (IOSQE_IO_LINK on all but the
 * last): the kernel starts each only after the previous one succeeded, and completes the rest with
 * -ECANCELED when one fails. Each request receives its own completion.
 */
final class LinkedRequests extends UringOp {
    private final UringRequest[] chain;

    LinkedRequests(UringRequest[] chain) {
        this.chain = chain;
    }

    @Override
    protected int sqeCount() {
        return chain.length;
    }

    @Override
    protected void prepare(Sqe sqe, int index) {
        chain[index].fill(sqe);
        if (index < chain.length - 1) sqe.addFlags(Sqe.IO_LINK);
    }

    @Override
    protected void complete(int index, int res, int flags, long big0, long big1) {
        chain[index].complete(0, res, flags, big0, big1);
    }

    @Override
    protected void fail(IOException cause) {
        for (UringRequest r : chain) if (!r.isDone()) r.fail(cause);
    }
}
