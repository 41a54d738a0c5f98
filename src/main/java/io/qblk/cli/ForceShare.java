package io.qblk.cli;

import io.qblk.io.ImageLock;
import picocli.CommandLine.Option;

/** {@code -U}/{@code --force-share} of the read-only commands, as qemu-img has it (see {@link ImageLock#forceShared}). */
public class ForceShare {
    @Option(names = {"-U", "--force-share"}, description = "open read-only without the locks that refuse other users: "
            + "inspect an image another process is writing (what it reads may be inconsistent)")
    boolean on;

    /** Runs {@code op} force-share when -U was given, as is otherwise. */
    <R, X extends Throwable> R run(ScopedValue.CallableOp<? extends R, X> op) throws X {
        return on ? ImageLock.forceShared(op) : op.call();
    }
}
