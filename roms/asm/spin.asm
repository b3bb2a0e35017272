; spin: prints one line, then loops forever with interrupts off. For testing --timeout and the
; report Ferrite prints when it gives up on a guest.

%include "inc/ferrite.inc"

entry:
    INIT
    PRINT `spin: looping forever\r\n`
.forever:
    jmp .forever

    ROM_END
