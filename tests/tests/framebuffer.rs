//! The VGA's linear framebuffer is guest memory mapped directly (no call or exit per write)
//! and the display still sees every write: pictures drawn from 64-bit user mode under each
//! backend, rendered in between as the window renders them, must show exactly what was drawn,
//! and a picture after a one-row change redraws only the rows around it.

use tests::framebuffer::{Drawer, Kind, HEIGHT, WIDTH};

fn pictures_reach_the_display(kind: Kind) {
    let mut d = match Drawer::new(kind) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("{kind:?}: skipped: {why}");
            return;
        }
    };
    let (w, h) = (u64::from(WIDTH), u64::from(HEIGHT));
    let corners = [(0, 0), (WIDTH - 1, 0), (0, HEIGHT - 1), (WIDTH - 1, HEIGHT - 1), (WIDTH / 2, HEIGHT / 2)];

    // A whole picture.
    d.draw(0, w * h, 0x12_34_56, 1).unwrap();
    assert!(d.render().unwrap(), "{kind:?}: the first picture was drawn");
    assert_eq!((d.frame.width, d.frame.height), (WIDTH, HEIGHT));
    for (x, y) in corners {
        assert_eq!(d.pixel(x, y), 0x12_34_56, "{kind:?}: pixel ({x}, {y}) of the first picture");
    }

    // Two more over the same pages, with pictures taken while the guest draws: writes after
    // a picture are logged again.
    d.draw_rendering(0, w * h, 0x00_AB_CD_00, 2, Some(10_000_000)).unwrap();
    // (A picture taken while the guest was already past its last store may have shown
    // everything: whether this one draws anything depends on timing under KVM.)
    d.render().unwrap();
    for (x, y) in corners {
        assert_eq!(d.pixel(x, y), 0xAB_CD_01, "{kind:?}: pixel ({x}, {y}) after the third picture");
    }

    // Nothing written: nothing to draw.
    assert!(!d.render().unwrap(), "{kind:?}: no write, no new picture");

    // One row: only the rows sharing its pages are redrawn.
    d.draw(500 * w, w, 0xFF_00_00, 1).unwrap();
    assert!(d.render().unwrap(), "{kind:?}: the one-row change was drawn");
    let rows = d.frame.changed_rows.clone();
    assert!(rows.contains(&500) && rows.len() <= 4, "{kind:?}: rows {rows:?} redrawn for a change to row 500");
    assert_eq!(d.pixel(0, 500), 0xFF_00_00, "{kind:?}: row 500, left");
    assert_eq!(d.pixel(WIDTH - 1, 500), 0xFF_00_00, "{kind:?}: row 500, right");
    assert_eq!(d.pixel(0, 499), 0xAB_CD_01, "{kind:?}: row 499 kept");
    assert_eq!(d.pixel(WIDTH - 1, 501), 0xAB_CD_01, "{kind:?}: row 501 kept");
}

#[test]
fn interpreter_pictures_reach_the_display() {
    pictures_reach_the_display(Kind::Interp);
}

#[test]
fn kvm_pictures_reach_the_display() {
    pictures_reach_the_display(Kind::Kvm);
}
