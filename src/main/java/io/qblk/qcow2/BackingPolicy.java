package io.qblk.qcow2;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Decides whether a backing file named in an image header may be opened. The name is untrusted
 * input: a service that confines images to some directories must confine their backing files too.
 */
@FunctionalInterface
public interface BackingPolicy {

    /**
     * @param name     the backing file name exactly as the header gives it
     * @param resolved that name resolved against the image's directory
     * @return the path to open
     * @throws IOException (usually {@link Qcow2Exception}) saying why the file is refused
     */
    Path admit(String name, Path resolved) throws IOException;

    /** Opens whatever the header names, like qemu-img (tests of the engine only). */
    BackingPolicy ANY = (name, resolved) -> resolved;

    /**
     * Opens no backing file at all: the header still names it ({@link ImageInfo#backingFilename()}),
     * but reads see only this image. For describing an image (qemu-img info does not open the chain
     * either); the engine refuses it for an image opened for writing.
     */
    BackingPolicy NOT_OPENED = (name, resolved) -> {
        throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "backing file " + name + " is not opened (NOT_OPENED policy)");
    };

    /**
     * Opens what the header names if it is a regular file (symlinks followed): device nodes,
     * directories and FIFOs are refused. The default of {@link OpenOptions} and the CLI's policy;
     * the service adds its allowed directories.
     */
    BackingPolicy REGULAR_FILES = (name, resolved) -> {
        if (Files.exists(resolved) && !Files.isRegularFile(resolved))
            throw new Qcow2Exception(Qcow2Exception.Kind.BACKING_REFUSED, "backing file " + name
                    + " is not a regular file (device nodes, directories and FIFOs are refused)");
        return resolved;
    };
}
