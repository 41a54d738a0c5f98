package io.qblk.cli;

import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;

/** Turns exceptions into the one-line messages and exit codes the CLI promises. */
public final class CliErrors {
    private CliErrors() {}

    public static String message(Throwable t) {
        if (t instanceof NoSuchFileException e) return e.getFile() + ": no such file";
        if (t instanceof FileAlreadyExistsException e) return e.getFile() + ": already exists";
        if (t instanceof AccessDeniedException e) return e.getFile() + ": permission denied";
        String m = t.getMessage();
        return m == null || m.isBlank() ? t.getClass().getSimpleName() : m;
    }

    public static int exitCode(Throwable t) {
        return 1;
    }
}
