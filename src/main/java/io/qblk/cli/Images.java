package io.qblk.cli;

import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.file.Path;

/** Opens qcow2 images for the commands, naming the file in any format error. */
final class Images {
    private Images() {}

    static Qcow2Image openQcow2(Path path, boolean readOnly) throws IOException {
        return openQcow2(path, OpenOptions.defaults().withReadOnly(readOnly));
    }

    static Qcow2Image openQcow2(Path path, OpenOptions options) throws IOException {
        try {
            return Qcow2Image.open(path, options);
        } catch (Qcow2Exception e) {
            String m = CliErrors.message(e);
            throw new IOException(m.startsWith(path.toString()) ? m : path + ": " + m, e);
        }
    }
}
