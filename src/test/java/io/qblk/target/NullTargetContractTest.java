package io.qblk.target;

/** The contract for the null target: it stores nothing, reads zeroes, has no file to fail. */
class NullTargetContractTest extends BlockTargetContractTest {
    @Override
    BlockTarget open(boolean readOnly) throws java.io.IOException {
        return TargetOpener.open(null, TargetOptions.defaults().withFormat(ImageFormat.NULL).withNullSize(SIZE));
    }

    @Override
    Faulty openFaulty() {
        return null;
    }

    @Override
    boolean stores() {
        return false;
    }
}
